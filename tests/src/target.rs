//! Target processes in real namespaces made with unshare(1) and ip(8).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A process running inside new namespaces; killed on drop.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
    /// The innermost process: the one whose namespaces are the target's.
    pub pid: i32,
}

impl NsProcess {
    /// Runs `sh -c SCRIPT` under `unshare --fork FLAGS`. The script's
    /// process (after unshare forks) is the target; it should end in a
    /// long-running `exec`.
    pub fn spawn(unshare_flags: &[&str], script: &str) -> NsProcess {
        let child = Command::new("unshare")
            .arg("--fork")
            .args(unshare_flags)
            .args(["sh", "-c", script])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let outer = child.id() as i32;
        let mut pid = 0;
        let found = crate::wait_until(Duration::from_secs(10), || {
            pid = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
                .unwrap_or(0);
            pid != 0
        });
        assert!(found, "unshare {unshare_flags:?} did not start its child");
        NsProcess { child, pid }
    }

    /// The `pid/PID` target naming this process.
    pub fn target(&self) -> String {
        format!("pid/{}", self.pid)
    }

    /// Waits until `f` holds for the target (e.g. a listener is up).
    pub fn wait_ready(&self, what: &str, f: impl FnMut() -> bool) {
        assert!(
            crate::wait_until(Duration::from_secs(10), f),
            "target not ready: {what}"
        );
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        // Killing the PID namespace's init (or the process) takes the rest.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
