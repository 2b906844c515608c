//! One module per subcommand.

pub mod benchmark;
pub mod common_args;
pub mod convert;
pub mod demo;
pub mod evaluate;
pub mod features;
pub mod finetune;
pub mod import;
pub mod info;
pub mod methods;
pub mod models;
pub mod parallel;
pub mod phantom;
pub mod predict;
pub mod pretrain;
pub mod probe;
pub mod subsets;
pub mod zeroshot;
