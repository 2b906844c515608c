//! Backbone architectures on tch. Parameter names follow the source
//! implementation (torchvision for ResNet), so weights move between cxrlearn
//! and PyTorch by name alone.

pub mod resnet;
