//! The one thread that forks tools.
//!
//! A tool is the agent's child and asks to be killed when its parent dies
//! (`PR_SET_PDEATHSIG`), but the kernel sends that signal when the *thread*
//! that made the child exits, not the process (prctl(2)). Tokio's blocking
//! threads come and go, so forking from one would kill the tool when that
//! thread retires. Every fork happens on this thread instead, which lives
//! as long as the agent; forks are milliseconds, so serializing them costs
//! nothing a user sees.

use std::io;
use std::sync::mpsc::{Sender, channel, sync_channel};

use crate::sys::fork;
use crate::sys::plan::{ChildPlan, SpawnOutcome};

type Job = (ChildPlan, std::sync::mpsc::SyncSender<io::Result<SpawnOutcome>>);

/// A handle to the spawner thread.
#[derive(Debug)]
pub struct Spawner {
    jobs: Sender<Job>,
}

impl Spawner {
    /// Starts the thread.
    pub fn start() -> io::Result<Spawner> {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("kns-spawner".into())
            .spawn(move || {
                for (plan, reply) in rx {
                    let _ = reply.send(fork::spawn(plan));
                }
            })?;
        Ok(Spawner { jobs: tx })
    }

    /// Runs [`fork::spawn`] on the spawner thread. Blocking: call it from a
    /// blocking thread.
    pub fn spawn(&self, plan: ChildPlan) -> io::Result<SpawnOutcome> {
        let (reply_tx, reply_rx) = sync_channel(1);
        let gone = || io::Error::other("the agent's spawner thread has stopped");
        self.jobs.send((plan, reply_tx)).map_err(|_| gone())?;
        reply_rx.recv().map_err(|_| gone())?
    }
}
