//! One module per subcommand.

pub mod convert;
pub mod evaluate;
pub mod features;
pub mod import;
pub mod info;
pub mod models;
pub mod phantom;
