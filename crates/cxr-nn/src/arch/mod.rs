//! Backbone architectures on tch. Parameter names follow the source
//! implementation (torchvision for ResNet and DenseNet, jeonsworld's ViT-pytorch for
//! REFERS' ViT, OpenAI for CLIP, Hugging Face for BERT), so weights move between cxrlearn
//! and PyTorch by name alone.

pub mod attention;
pub mod bert;
pub mod clip;
pub mod densenet;
pub mod resnet;
pub mod vit;
