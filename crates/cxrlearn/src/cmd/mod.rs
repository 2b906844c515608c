//! One module per subcommand.

pub mod evaluate;
