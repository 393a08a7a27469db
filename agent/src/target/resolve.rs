//! Turning a target (container, PID, node) into a pinned process: a pidfd
//! that is checked to still be the process that was resolved.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::kernel::procfs::{self, ProcError};
use crate::metrics::Metrics;
use crate::sys;
use crate::target::cgroup_scan;
use crate::target::cri::{self, Cri, CriError};

/// What the user asked to enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Container(String),
    Pid(i32),
    Node,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Container(id) => write!(f, "container/{id}"),
            Target::Pid(p) => write!(f, "pid/{p}"),
            Target::Node => f.write_str("node"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error(transparent)]
    Cri(#[from] CriError),
    #[error("container {id} was not found: {cri}, and no process on this node has it in its cgroup")]
    ContainerNotFound { id: String, cri: String },
    #[error("process {pid} has exited")]
    Exited { pid: i32 },
    #[error("process {pid} changed between lookup and entry (it exited and the PID was reused)")]
    Replaced { pid: i32 },
    #[error("process {pid} is no longer in container {id} (the container restarted)")]
    LeftContainer { pid: i32, id: String },
    #[error("cannot open a pidfd for process {pid}: {source}")]
    Pidfd {
        pid: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid PID {pid}")]
    BadPid { pid: i32 },
}

/// A resolved target: the process to enter, identified by PID and start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub pid: i32,
    pub start_time: u64,
    pub container_id: Option<String>,
    /// The container's process identity, from the runtime.
    pub identity: Option<crate::target::oci::ProcessSpec>,
    /// The container's pod, as the runtime labels it.
    pub pod: Option<cri::PodRef>,
}

/// A resolved target held by a pidfd, verified after the pidfd was opened.
#[derive(Debug)]
pub struct Pinned {
    pub resolved: Resolved,
    pub pidfd: OwnedFd,
}

/// Resolves targets; shared by all sessions.
#[derive(Debug)]
pub struct Resolver {
    /// The node reference, as probed: the `node` target.
    node: Resolved,
    explicit_endpoint: Option<String>,
    cri: Mutex<Option<Cri>>,
    /// For the runtimes connected later.
    metrics: Metrics,
    /// Containers the runtime resolved lately, by their full ID.
    known: std::sync::Mutex<HashMap<String, (Instant, Resolved)>>,
}

/// How long a container the runtime resolved is answered without asking
/// it again. Nothing of what is kept changes while the container runs (its
/// ID is never reused, its process spec and pod labels are fixed at
/// creation), and whether it still runs is checked on every use: its
/// process must still be alive, with the same start time, in the
/// container's cgroup. So the bound is only there to let a runtime's word
/// be heard again now and then.
const KNOWN_TTL: Duration = Duration::from_secs(60);
/// At most this many containers are remembered (a node runs a few
/// hundred at most); past it the memory starts afresh.
const KNOWN_MAX: usize = 1024;

impl Resolver {
    /// `node_pid` and `node_start` are the node reference's PID and its
    /// start time when it was probed.
    pub fn new(
        node_pid: i32,
        node_start: u64,
        cri_endpoint: Option<String>,
        cri: Option<Cri>,
        metrics: Metrics,
    ) -> Arc<Resolver> {
        Arc::new(Resolver {
            node: Resolved {
                pid: node_pid,
                start_time: node_start,
                container_id: None,
                identity: None,
                pod: None,
            },
            explicit_endpoint: cri_endpoint,
            cri: Mutex::new(cri),
            metrics,
            known: Default::default(),
        })
    }

    pub fn node_pid(&self) -> i32 {
        self.node.pid
    }

    /// The runtime in use, connecting (or detecting) on first need. The
    /// lock is not held while connecting, which can take seconds per socket:
    /// other sessions keep resolving (by cgroup if need be) meanwhile.
    pub async fn cri(&self) -> Result<Cri, CriError> {
        if let Some(c) = &*self.cri.lock().await {
            return Ok(c.clone());
        }
        let c = match &self.explicit_endpoint {
            Some(ep) => Cri::connect(ep, &self.metrics).await?,
            None => Cri::detect(&self.metrics).await?,
        };
        let mut guard = self.cri.lock().await;
        if let Some(other) = &*guard {
            // Another session connected meanwhile: one connection is enough.
            return Ok(other.clone());
        }
        tracing::info!(endpoint = c.endpoint(), runtime = %c.runtime, "connected to CRI runtime");
        *guard = Some(c.clone());
        Ok(c)
    }

    pub async fn resolve(&self, target: &Target) -> Result<Resolved, ResolveError> {
        match target {
            Target::Pid(p) if *p <= 0 => Err(ResolveError::BadPid { pid: *p }),
            Target::Pid(p) => Resolved::process(*p),
            // Pinned with the start time probed: a process that took the
            // PID of one that exited is refused as replaced.
            Target::Node => Ok(self.node.clone()),
            Target::Container(id) => self.container(id).await,
        }
    }

    async fn container(&self, id: &str) -> Result<Resolved, ResolveError> {
        if let Some(known) = self.known(id) {
            return Ok(known);
        }
        let (c, from_runtime) = self.container_pid(id).await?;
        let resolved = Resolved {
            container_id: Some(c.id.clone()),
            identity: c.identity,
            pod: c.pod,
            ..Resolved::process(c.pid)?
        };
        // A prefix could name another container later: only full IDs (and
        // not one the runtime left out of its answer, where `c.id` is what
        // was asked).
        if from_runtime && c.id == id && id.len() == cgroup_scan::FULL_ID_LEN {
            self.remember(resolved.clone());
        }
        Ok(resolved)
    }

    /// Container `id` as the runtime resolved it lately, if its process is
    /// still the one resolved and still in the container.
    fn known(&self, id: &str) -> Option<Resolved> {
        let mut known = self.known.lock().ok()?;
        let (at, r) = known.get(id)?;
        let same = at.elapsed() < KNOWN_TTL
            && procfs::stat(r.pid).is_ok_and(|st| st.start_time == r.start_time && !st.is_zombie())
            && procfs::cgroup(r.pid).is_ok_and(|cg| cgroup_scan::cgroup_names(&cg, id));
        if same {
            return Some(r.clone());
        }
        known.remove(id);
        None
    }

    fn remember(&self, r: Resolved) {
        let (Ok(mut known), Some(id)) = (self.known.lock(), r.container_id.clone()) else {
            return;
        };
        if known.len() >= KNOWN_MAX {
            known.retain(|_, (at, _)| at.elapsed() < KNOWN_TTL);
            if known.len() >= KNOWN_MAX {
                known.clear();
            }
        }
        known.insert(id, (Instant::now(), r));
    }

    /// The container's process, and whether the runtime named it (else it
    /// was found by its cgroup).
    async fn container_pid(&self, id: &str) -> Result<(cri::ContainerPid, bool), ResolveError> {
        let cri_err = match self.cri().await {
            Ok(c) => match c.container_pid(id).await {
                Ok(p) => return Ok((p, true)),
                Err(e @ (CriError::Unavailable { .. } | CriError::NoRuntime { .. })) => {
                    // The runtime went away since we connected: forget it so
                    // the next request connects again.
                    *self.cri.lock().await = None;
                    e
                }
                Err(e) => return Err(e.into()),
            },
            Err(e) => e,
        };
        tracing::warn!(container_id = id, error = %cri_err, "CRI unavailable, scanning /proc cgroups");
        let id_owned = id.to_owned();
        tokio::task::spawn_blocking(move || cgroup_scan::pid_from_cgroups(&id_owned))
            .await
            .unwrap_or(Ok(None))?
            .map(|p| (p, false))
            .ok_or_else(|| ResolveError::ContainerNotFound {
                id: id.to_owned(),
                cri: cri_err.to_string(),
            })
    }
}

impl Resolved {
    /// Process `pid` as found now: alive (not a zombie), with the start
    /// time that pins it from here on.
    fn process(pid: i32) -> Result<Resolved, ResolveError> {
        let st = procfs::stat(pid)?;
        if st.is_zombie() {
            return Err(ResolveError::Exited { pid });
        }
        Ok(Resolved {
            pid,
            start_time: st.start_time,
            container_id: None,
            identity: None,
            pod: None,
        })
    }
}

/// Opens a pidfd for a resolved target and checks that it names the same
/// process: the start time still matches (the PID was not reused) and, for a
/// container, the process is still in the container's cgroup.
pub fn pin(r: &Resolved) -> Result<Pinned, ResolveError> {
    let pidfd = sys::pidfd_open(r.pid).map_err(|source| match source.raw_os_error() {
        Some(libc::ESRCH) => ResolveError::Exited { pid: r.pid },
        _ => ResolveError::Pidfd { pid: r.pid, source },
    })?;
    let now = procfs::stat(r.pid).map_err(|e| match e {
        ProcError::NoSuchProcess { pid } => ResolveError::Exited { pid },
        e => e.into(),
    })?;
    if now.start_time != r.start_time {
        return Err(ResolveError::Replaced { pid: r.pid });
    }
    if now.is_zombie() {
        return Err(ResolveError::Exited { pid: r.pid });
    }
    if let Some(id) = &r.container_id {
        let cg = procfs::cgroup(r.pid)?;
        if !cgroup_scan::cgroup_names(&cg, id) {
            return Err(ResolveError::LeftContainer {
                pid: r.pid,
                id: id.clone(),
            });
        }
    }
    Ok(Pinned {
        resolved: r.clone(),
        pidfd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_node_is_pinned_by_its_start_time_when_probed() {
        // This process stands for a reference that exited, its PID now
        // another process's: another start time than the one probed.
        let me = std::process::id() as i32;
        let probed = procfs::stat(me).unwrap().start_time + 1;
        let r = Resolver::new(me, probed, None, None, Metrics::default());
        let node = r.resolve(&Target::Node).await.unwrap();
        assert_eq!(node.start_time, probed);
        assert!(matches!(pin(&node), Err(ResolveError::Replaced { pid }) if pid == me));
    }

    #[tokio::test]
    async fn pins_own_process_and_rejects_changed_start_time() {
        let me = std::process::id() as i32;
        let r = Resolver::new(
            me,
            procfs::stat(me).unwrap().start_time,
            None,
            None,
            Metrics::default(),
        );
        let resolved = r.resolve(&Target::Pid(me)).await.unwrap();
        assert!(pin(&resolved).is_ok());
        let forged = Resolved {
            start_time: resolved.start_time + 1,
            ..resolved
        };
        assert!(matches!(pin(&forged), Err(ResolveError::Replaced { .. })));
    }

    #[tokio::test]
    async fn rejects_bad_and_missing_pids() {
        let r = Resolver::new(1, 0, None, None, Metrics::default());
        assert!(matches!(
            r.resolve(&Target::Pid(0)).await,
            Err(ResolveError::BadPid { .. })
        ));
        let err = r.resolve(&Target::Pid(i32::MAX)).await.unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    /// A process in a cgroup named like a container (a full ID), made in
    /// the unified hierarchy; removed with the process on drop.
    struct InContainer {
        child: std::process::Child,
        dir: std::path::PathBuf,
        id: String,
    }

    impl InContainer {
        fn start() -> InContainer {
            use crate::kernel::cgroupfs::{Hierarchy, mount_of};
            assert!(
                nix::unistd::geteuid().is_root(),
                "this test makes a cgroup: run it as root"
            );
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
            let (mount, _) = mount_of(&mountinfo, Hierarchy::Unified).expect("a cgroup2 mount");
            let id = format!("{:064x}", std::process::id());
            let dir = mount.join(&id);
            std::fs::create_dir_all(&dir).unwrap();
            let child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
            std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
            InContainer { child, dir, id }
        }

        fn resolved(&self) -> Resolved {
            Resolved {
                container_id: Some(self.id.clone()),
                ..Resolved::process(self.child.id() as i32).unwrap()
            }
        }

        fn stop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Drop for InContainer {
        fn drop(&mut self) {
            self.stop();
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    #[test]
    fn a_known_container_is_answered_while_its_process_lives_in_it() {
        let mut c = InContainer::start();
        let r = Resolver::new(1, 0, None, None, Metrics::default());
        r.remember(c.resolved());
        assert_eq!(r.known(&c.id), Some(c.resolved()));
        // Another start time (the PID was reused): not the process resolved.
        r.remember(Resolved {
            start_time: c.resolved().start_time + 1,
            ..c.resolved()
        });
        assert_eq!(r.known(&c.id), None);
        assert!(r.known.lock().unwrap().is_empty(), "forgotten");
        r.remember(c.resolved());
        c.stop();
        assert_eq!(r.known(&c.id), None, "the container's process is gone");
        // A process that is not in the container's cgroup.
        let me = std::process::id() as i32;
        r.remember(Resolved {
            container_id: Some(c.id.clone()),
            ..Resolved::process(me).unwrap()
        });
        assert_eq!(r.known(&c.id), None);
    }

    #[test]
    fn container_check_uses_cgroup() {
        let me = std::process::id() as i32;
        let resolved = Resolved {
            pid: me,
            start_time: procfs::stat(me).unwrap().start_time,
            container_id: Some("0123456789abcdef".into()),
            identity: None,
            pod: None,
        };
        assert!(matches!(pin(&resolved), Err(ResolveError::LeftContainer { .. })));
    }
}
