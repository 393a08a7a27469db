//! A real `kubectl-ns-agent` on a private unix socket, in a pod-like
//! sandbox: as in its DaemonSet pod, it shares only the host's PID namespace
//! and has its own network, UTS, IPC, mount and cgroup namespaces, with its
//! own hostname and loopback. The node reference is this test process, in
//! the host's namespaces. A test can then tell the node's namespaces from
//! the agent's, which is what a real cluster does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Runs its arguments in the agent's pod-like namespaces (hostPID only).
const SANDBOX: &str = "hostname kns-agent-pod && ip link set lo up && exec \"$@\"";

/// The port the manifest's agent listens on, in its own network namespace,
/// and the one the plugin port-forwards to by default.
pub const AGENT_PORT: u16 = 7469;

/// The hostname of the agent's sandbox, which no tool may see unless it
/// chose the target's UTS namespace and the target has this one.
pub const SANDBOX_HOSTNAME: &str = "kns-agent-pod";

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

    /// Also listens on 127.0.0.1:[`AGENT_PORT`] in its own network
    /// namespace, as in its pod, where the API server's port-forward reaches
    /// it (see [`Agent::in_netns`]).
    pub fn start_tcp(cri: Option<&str>) -> Agent {
        Agent::start_full(cri, &[], Some(AGENT_PORT))
    }

    fn start_full(cri: Option<&str>, env: &[(&str, &str)], tcp: Option<u16>) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("agent.sock");
        let log = dir.path().join("agent.log");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--net",
            "--uts",
            "--ipc",
            "--mount",
            "--cgroup",
            "--propagation",
            "private",
        ])
        .args(["sh", "-c", SANDBOX, "sh"])
        .arg(crate::bins::agent())
        .arg("--listen")
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

    /// A command for `program` that runs in the agent's network namespace,
    /// the way the kubelet runs an exec probe in the pod; add its arguments.
    pub fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .arg("--")
            .arg(program);
        c
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
