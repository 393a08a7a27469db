//! One module per subcommand; a verb with helpers of its own is a folder
//! (`exec/`).

pub mod audit;
pub mod exec;
pub mod install;
pub mod ls;
pub mod replay;
pub mod sessions;
pub mod status;
pub mod version;
