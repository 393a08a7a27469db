//! What the agent could set up for its sessions' containment at start.

use std::fs;
use std::sync::Arc;

use crate::kernel::cgroupfs::{Layout, layout};

use super::Sessions;

/// What the agent could set up for its sessions, which `kubectl ns status`
/// reports per node.
#[derive(Debug, Clone)]
pub struct Containment {
    /// Where sessions' cgroups are made; `None` when they cannot be.
    pub sessions: Option<Arc<Sessions>>,
    /// The node's cgroup layout, from the node reference process's mounts;
    /// `None` when they cannot be read.
    pub layout: Option<Layout>,
    /// Why sessions are not each in a cgroup of their own.
    pub error: Option<String>,
    /// The sessions' memory limit in force, in bytes: `Ok(None)` when none
    /// was asked for, `Err` with why one asked for is not in force.
    pub memory: Result<Option<u64>, String>,
}

impl Containment {
    /// Makes the sessions' subtree (killing what agents that died left in
    /// theirs) and its memory limit, logging what could not be had.
    pub fn setup(node_pid: i32, memory: Option<u64>) -> Containment {
        let layout = fs::read_to_string(format!("/proc/{node_pid}/mountinfo"))
            .ok()
            .and_then(|m| layout(&m));
        let layout_name = layout.map_or_else(|| "unknown".to_owned(), |l| l.to_string());
        let (mut sessions, left) = match Sessions::open() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, layout = %layout_name,
                    "no session cgroups: a session's processes are found by process group only, \
                     so what a tool moves to its own session (setsid, daemons) can outlive it");
                let error = e.to_string();
                return Containment {
                    sessions: None,
                    layout,
                    memory: match memory {
                        None => Ok(None),
                        Some(_) => Err(format!("no session cgroups ({error})")),
                    },
                    error: Some(error),
                };
            }
        };
        if left.sessions > 0 {
            tracing::warn!(
                sessions = left.sessions,
                processes = left.processes,
                "killed what sessions of a previous run of the agent left behind"
            );
        }
        tracing::info!(cgroup = sessions.path(), layout = %layout_name, "sessions each run in a cgroup of their own");
        let memory = match memory {
            None => Ok(None),
            Some(max) => match sessions.limit_memory(max) {
                Ok(h) => {
                    tracing::info!(mib = max >> 20, hierarchy = %h, "sessions' memory limit");
                    Ok(Some(max))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no memory limit for the sessions: they share the agent's");
                    Err(e.to_string())
                }
            },
        };
        Containment {
            sessions: Some(Arc::new(sessions)),
            layout,
            error: None,
            memory,
        }
    }
}
