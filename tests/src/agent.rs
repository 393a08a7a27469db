//! A real `kubectl-ns-agent` on a private unix socket.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running agent; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts an agent whose node reference is this test process (PID 1 is
    /// not readable on these machines) and whose CRI is `cri` (or none:
    /// an endpoint that does not exist, so it never finds the host's).
    pub fn start(cri: Option<&str>) -> Agent {
        Agent::start_with_env(cri, &[])
    }

    pub fn start_with_env(cri: Option<&str>, env: &[(&str, &str)]) -> Agent {
        Agent::start_full(cri, env, None)
    }

    /// Also listens on 127.0.0.1:`port`, as in its pod, where the API
    /// server's port-forward reaches it.
    pub fn start_tcp(cri: Option<&str>, port: u16) -> Agent {
        Agent::start_full(cri, &[], Some(port))
    }

    fn start_full(cri: Option<&str>, env: &[(&str, &str)], tcp: Option<u16>) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let log = dir.path().join("agent.log");
        let mut cmd = Command::new(crate::bins::agent());
        cmd.arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .arg("--node-pid")
            .arg(std::process::id().to_string())
            .env("KNS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(ep) = cri {
            cmd.arg("--cri-endpoint").arg(ep);
        }
        if let Some(port) = tcp {
            cmd.arg("--listen").arg(format!("tcp://127.0.0.1:{port}"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn kubectl-ns-agent");
        let mut agent = Agent {
            child: Some(child),
            _dir: dir,
            socket,
            log,
        };
        let up = crate::wait_until(Duration::from_secs(10), || {
            agent.socket.exists() || agent.exited()
        });
        assert!(
            up && agent.socket.exists(),
            "agent did not start:\n{}",
            agent.logs()
        );
        agent
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// `unix:///…` for `--agent`.
    pub fn addr(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the agent to exit; returns its status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let mut status = None;
        crate::wait_until(Duration::from_secs(10), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            status = child.wait().ok();
        }
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
