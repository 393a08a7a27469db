//! One module per subcommand.

pub mod exec;
pub mod ls;
pub mod version;
