//! Backbone architectures on tch. Parameter names follow the source
//! implementation (torchvision for ResNet and DenseNet), so weights move between cxrlearn
//! and PyTorch by name alone.

pub mod densenet;
pub mod resnet;
