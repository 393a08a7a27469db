//! One module per subcommand.

pub mod exec;
pub mod install;
pub mod ls;
pub mod status;
pub mod version;
