//! Neural-network side of cxrlearn: everything that needs libtorch.
//!
//! Backbones with their source implementation's parameter names, a
//! non-executing checkpoint reader, strict loading that names every mismatched
//! key, and device selection. The model registry builds on these.

pub mod allocator;
pub mod arch;
pub mod backbone;
pub mod checkpoint;
pub mod device;
pub mod encoder;
pub mod entry;
pub mod error;
pub mod hf_config;
pub mod image_text;
pub mod import;
pub mod load;
pub mod memory_format;
pub mod model_dir;
pub mod models;
pub mod multi_tensor;
pub mod onednn;
pub mod precision;
pub mod registry;
mod shim;
pub mod spec;
pub mod system;
pub mod text;

pub use error::NnError;
pub use tch;
