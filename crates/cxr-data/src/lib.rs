//! Data side of cxrlearn: image decoding, dataset presets, the dataset store,
//! and the synthetic phantom chest X-ray generator. Nothing here needs libtorch.

pub mod atomic;
pub mod augment;
pub mod claim;
pub mod convert;
pub mod csv_source;
pub mod decode;
pub mod error;
pub mod labels;
pub mod phantom;
pub mod preprocess;
pub mod presets;
pub mod splits;
pub mod store;
