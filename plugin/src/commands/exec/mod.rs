//! `kubectl ns exec`: run a node tool inside a target's namespaces. One
//! target is a session (`session`: the local end in `local`, signals in
//! `signals`); `-l` runs the same start in many pods at once (`many`).
//! Both begin with the same validated start message (`start`).

mod local;
pub mod many;
mod session;
mod signals;
mod start;
pub mod terminal;

use crate::cli::ExecArgs;
use crate::error::Failure;

pub async fn run(args: ExecArgs) -> Result<u8, Failure> {
    if args.selector.is_some() {
        return many::run(args).await;
    }
    session::run(args).await
}
