//! One module per subcommand.

pub mod audit;
pub mod exec;
pub mod install;
pub mod ls;
pub mod status;
pub mod version;
