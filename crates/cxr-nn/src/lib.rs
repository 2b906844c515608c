//! Neural-network side of cxrlearn: everything that needs libtorch.
//!
//! For now this crate holds the device selection that later modules share;
//! backbones, the model registry and checkpoint import build on it.

pub mod checkpoint;
pub mod device;

pub use tch;
