//! A real `kubectl-ns-agent` on a private unix socket, in a pod-like
//! sandbox: as in its DaemonSet pod, it shares only the host's PID namespace
//! and has its own network, UTS, IPC, mount and cgroup namespaces, with its
//! own hostname and loopback. The node reference is this test process, in
//! the host's namespaces. A test can then tell the node's namespaces from
//! the agent's, which is what a real cluster does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Runs its arguments in the agent's pod-like namespaces (hostPID only),
/// in the cgroup `$KNS_CG` with a cgroup namespace rooted there and the
/// unified hierarchy mounted afresh, read-only, at `$KNS_CG2`: as a runtime
/// gives a container its own cgroup and cgroupfs. Like a container's root,
/// the agent has supplementary group 0.
/// The agent's memory is limited as a container's is: in `$KNS_CG` on a
/// cgroup v2 node; where the node has a cgroup v1 memory hierarchy, in a
/// memory cgroup of its own there, `$KNS_MEMCG`, mounted afresh, read-only,
/// at `$KNS_MEMCG_MOUNT`.
const SANDBOX: &str = r#"echo $$ > "$KNS_CG/cgroup.procs" && { [ -z "$KNS_MEMCG" ] || echo $$ > "$KNS_MEMCG/cgroup.procs"; } && exec unshare --cgroup --net --uts --ipc --mount --propagation private sh -c 'umount -l "$KNS_CG2" && mount -o ro,nosuid,nodev,noexec -t cgroup2 cgroup2 "$KNS_CG2" && { [ -z "$KNS_MEMCG" ] || { umount -l "$KNS_MEMCG_MOUNT" && mount -o ro,nosuid,nodev,noexec,memory -t cgroup cgroup "$KNS_MEMCG_MOUNT"; }; } && hostname kns-agent-pod && ip link set lo up && exec setpriv --groups 0 -- "$@"' sh "$@""#;

/// The memory limit of the agent's container in the manifest.
const AGENT_MEMORY_LIMIT: u64 = 512 << 20;

/// The port the manifest's agent listens on, in its own network namespace,
/// and the one the plugin port-forwards to by default.
pub const AGENT_PORT: u16 = 7469;

/// The hostname of the agent's sandbox, which no tool may see unless it
/// chose the target's UTS namespace and the target has this one.
pub const SANDBOX_HOSTNAME: &str = "kns-agent-pod";

/// A cgroup hierarchy mounted here.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    pub path: PathBuf,
    /// cgroup v2 (unified), else v1.
    pub unified: bool,
    /// A v1 hierarchy's controllers (and `name=…`), from its super options.
    pub controllers: Vec<String>,
}

/// Every cgroup hierarchy mounted here: on a cgroup v1 (hybrid) node one
/// per controller and the unified one at /sys/fs/cgroup/unified, on a
/// cgroup v2 node the unified one alone at /sys/fs/cgroup.
pub fn cgroup_mounts() -> Vec<CgroupMount> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let mut post = post.split_whitespace();
            let unified = match post.next()? {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let options = post.nth(1).unwrap_or_default();
            Some(CgroupMount {
                path: PathBuf::from(pre.split_whitespace().nth(4)?),
                unified,
                controllers: if unified {
                    Vec::new()
                } else {
                    options.split(',').map(String::from).collect()
                },
            })
        })
        .collect()
}

/// Where the cgroup v2 (unified) hierarchy is mounted here.
pub fn unified_mount() -> PathBuf {
    cgroup_mounts()
        .into_iter()
        .find(|m| m.unified)
        .map(|m| m.path)
        .expect("no cgroup v2 hierarchy is mounted: the agent's session cgroups need one")
}

/// A cgroup in the unified hierarchy, like a container's (the agent's own,
/// or a stand-in container's); everything in it is killed and it is
/// removed on drop.
#[derive(Debug)]
pub struct AgentCgroup {
    pub dir: PathBuf,
    /// Where the unified hierarchy is mounted.
    mount: PathBuf,
    /// The agent's cgroup v1 memory cgroup and where that hierarchy is
    /// mounted, on nodes that have one.
    pub memory: Option<(PathBuf, PathBuf)>,
    /// Removed on drop (false for a sibling agent's view of another's).
    owned: bool,
}

impl AgentCgroup {
    fn new() -> AgentCgroup {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("kns-test-agent-{}-{n}", std::process::id());
        let mut cg = AgentCgroup::named(&name);
        cg.memory = v1_memory().map(|(mount, own)| {
            let dir = own.join(&name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            std::fs::write(dir.join("memory.limit_in_bytes"), AGENT_MEMORY_LIMIT.to_string())
                .expect("memory.limit_in_bytes");
            (dir, mount)
        });
        if cg.memory.is_none() {
            // A cgroup v2 node: the container's limit is its unified
            // cgroup's own.
            let max = cg.dir.join("memory.max");
            std::fs::write(&max, AGENT_MEMORY_LIMIT.to_string()).unwrap_or_else(|e| {
                panic!(
                    "cannot write {}: {e} (is the memory controller in the parent's cgroup.subtree_control?)",
                    max.display()
                )
            });
        }
        cg
    }

    /// A cgroup of that name at the top of the unified hierarchy.
    pub fn named(name: &str) -> AgentCgroup {
        let mount = unified_mount();
        let dir = mount.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        AgentCgroup {
            dir,
            mount,
            memory: None,
            owned: true,
        }
    }

    /// Every process in the cgroup and below it.
    pub fn procs(&self) -> Vec<i32> {
        fn walk(dir: &std::path::Path, out: &mut Vec<i32>) {
            if let Ok(s) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &mut out);
        out
    }

    /// The session cgroups agents in this cgroup have made, by name
    /// (`kns-sessions-PID/session-N`, and `memory:kns-sessions-PID/session-N`
    /// for their cgroup v1 memory cgroups).
    pub fn sessions(&self) -> Vec<String> {
        self.sessions_dirs()
            .into_iter()
            .flat_map(|d| {
                let memory = if d.starts_with(&self.dir) { "" } else { "memory:" };
                let parent = d.file_name().unwrap_or_default().to_string_lossy().into_owned();
                std::fs::read_dir(&d)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(move |e| format!("{memory}{parent}/{}", e.file_name().to_string_lossy()))
            })
            .collect()
    }

    /// The agents' sessions subtrees (`kns-sessions-PID`), in the unified
    /// hierarchy and in the v1 memory one.
    pub fn sessions_dirs(&self) -> Vec<PathBuf> {
        std::iter::once(&self.dir)
            .chain(self.memory.as_ref().map(|(d, _)| d))
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with("kns-sessions"))
            .map(|e| e.path())
            .collect()
    }
}

impl Drop for AgentCgroup {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        crate::wait_until(Duration::from_secs(5), || self.procs().is_empty());
        fn remove(dir: &std::path::Path) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&e.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.dir);
        if let Some((dir, _)) = &self.memory {
            remove(dir);
        }
    }
}

/// The cgroup v1 memory hierarchy's mount point and this process's memory
/// cgroup in it, where the node has that hierarchy.
fn v1_memory() -> Option<(PathBuf, PathBuf)> {
    let mount = cgroup_mounts()
        .into_iter()
        .find(|m| m.controllers.iter().any(|c| c == "memory"))?
        .path;
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = cgroup.lines().find_map(|l| {
        let mut f = l.splitn(3, ':').skip(1);
        f.next()?
            .split(',')
            .any(|c| c == "memory")
            .then(|| f.next())
            .flatten()
    })?;
    Some((mount.clone(), mount.join(own.trim_start_matches('/'))))
}

/// A running agent; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    cri: Option<String>,
    env: Vec<(String, String)>,
    tcp: Option<u16>,
    pub cgroup: AgentCgroup,
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The agent's stdout: its audit trail.
    pub stdout: PathBuf,
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

    /// [`Agent::start_tcp`] with more environment (e.g. an API server's,
    /// from [`crate::kubeapi::FakeApi::agent_env`]).
    pub fn start_tcp_env(cri: Option<&str>, env: &[(String, String)]) -> Agent {
        Agent::launched(
            cri.map(Into::into),
            env.to_vec(),
            Some(AGENT_PORT),
            AgentCgroup::new(),
        )
    }

    fn start_full(cri: Option<&str>, env: &[(&str, &str)], tcp: Option<u16>) -> Agent {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Agent::launched(cri.map(Into::into), env, tcp, AgentCgroup::new())
    }

    /// An agent in `cgroup`, with its own socket and logs, started.
    fn launched(
        cri: Option<String>,
        env: Vec<(String, String)>,
        tcp: Option<u16>,
        cgroup: AgentCgroup,
    ) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut agent = Agent {
            child: None,
            cri,
            env,
            tcp,
            cgroup,
            socket: dir.path().join("agent.sock"),
            log: dir.path().join("agent.log"),
            stdout: dir.path().join("agent.stdout"),
            _dir: dir,
        };
        agent.launch();
        agent
    }

    /// Starts the agent process (again, after [`Agent::kill`]: in the same
    /// cgroup, as a restarted service is) and waits until it listens.
    pub fn launch(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", SANDBOX, "sh"])
            .env("KNS_CG", &self.cgroup.dir)
            .env("KNS_CG2", &self.cgroup.mount)
            .env(
                "KNS_MEMCG",
                self.cgroup
                    .memory
                    .as_ref()
                    .map(|(d, _)| d.as_os_str())
                    .unwrap_or_default(),
            )
            .env(
                "KNS_MEMCG_MOUNT",
                self.cgroup
                    .memory
                    .as_ref()
                    .map(|(_, m)| m.as_os_str())
                    .unwrap_or_default(),
            )
            .arg(crate::bins::agent())
            .arg("--listen")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--node-pid")
            .arg(std::process::id().to_string())
            .env("KNS_LOG", "info")
            // As the manifest sets it.
            .env("KNS_SESSIONS_MEMORY", "448Mi")
            .stdin(Stdio::null())
            .stdout(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&self.stdout)
                    .expect("stdout file"),
            )
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .expect("log file"),
            );
        if let Some(ep) = &self.cri {
            cmd.arg("--cri-endpoint").arg(ep);
        }
        if let Some(port) = self.tcp {
            // As the manifest has it: the TLS port, for client
            // certificates, is the next one.
            cmd.arg("--listen")
                .arg(format!("tcp://127.0.0.1:{port}"))
                .arg("--listen")
                .arg(format!("tls://127.0.0.1:{}", port + 1));
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(cmd.spawn().expect("spawn kubectl-ns-agent"));
        // The unix socket is bound first: the TCP and TLS ports may come a
        // moment later, and a port-forward must not beat them.
        let (pid, tcp, socket) = (self.pid(), self.tcp, self.socket.clone());
        let listening = || {
            socket.exists()
                && tcp.is_none_or(|p| {
                    crate::listens_on_loopback(pid, p) && crate::listens_on_loopback(pid, p + 1)
                })
        };
        let up = crate::wait_until(Duration::from_secs(10), || listening() || self.exited());
        assert!(up && listening(), "agent did not start:\n{}", self.logs());
    }

    /// A second agent in this one's cgroup, on its own socket, as a
    /// debugging copy next to a node service would be.
    pub fn sibling(&self) -> Agent {
        let cgroup = AgentCgroup {
            dir: self.cgroup.dir.clone(),
            mount: self.cgroup.mount.clone(),
            memory: self.cgroup.memory.clone(),
            owned: false,
        };
        Agent::launched(self.cri.clone(), self.env.clone(), None, cgroup)
    }

    /// SIGKILLs the agent, as the OOM killer or a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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

    /// Whether the log has `needle` within 5 s. A session's own line is
    /// written after the client saw it end, so reading the log at once
    /// races with it.
    pub fn logged(&self, needle: &str) -> bool {
        crate::wait_until(std::time::Duration::from_secs(5), || self.logs().contains(needle))
    }

    /// The audit records the agent wrote on stdout so far, parsed.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        audit_records(&self.stdout)
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

/// The whole audit records in a file the agent writes, parsed. A line not
/// yet ended with a newline is one the agent is still writing.
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not an audit line ({e}): {l}")))
        .collect()
}
