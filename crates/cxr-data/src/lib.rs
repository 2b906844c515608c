//! Data side of cxrlearn: image decoding, dataset presets, the dataset store,
//! and the synthetic phantom chest X-ray generator. Nothing here needs libtorch.

pub mod phantom;
