//! A private containerd (Debian's package) with the CRI plugin, on its own
//! root, state, socket, CNI bridge and cgroup parent, so tests never touch
//! or depend on a system containerd. Its state lives in a directory, so the
//! demo can start it in one command and tear it down in another.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, bail};
use kns_proto::cri::runtime_service_client::RuntimeServiceClient;
use kns_proto::cri::{
    Capability, ContainerConfig, ContainerMetadata, ContainerStatusRequest, CreateContainerRequest,
    ImageSpec, Int64Value, KeyValue, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    SecurityProfile, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest, VersionRequest,
    security_profile::ProfileType,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// The locally built image: pause image and workload alike.
pub const IMAGE: &str = "docker.io/kns/busybox:1";

/// A pod to run: one container in one sandbox.
#[derive(Debug, Clone, Default)]
pub struct PodSpec {
    pub name: String,
    pub host_network: bool,
    /// Share the node's PID namespace (hostPID).
    pub host_pid: bool,
    /// Share the node's IPC namespace (hostIPC).
    pub host_ipc: bool,
    /// The image; the test busybox image when empty.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// (host path, container path, read-only).
    pub mounts: Vec<(PathBuf, String, bool)>,
    /// Capabilities to add and drop, as a pod's securityContext names them.
    pub caps_add: Vec<String>,
    pub caps_drop: Vec<String>,
    pub readonly_rootfs: bool,
    /// The container's uid; the image's user when unset.
    pub run_as_user: Option<i64>,
    /// The container's gid; the image's group when unset.
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    /// allowPrivilegeEscalation: false.
    pub no_new_privs: bool,
    pub privileged: bool,
    /// seccompProfile: RuntimeDefault (the runtime's default profile).
    pub seccomp_default: bool,
    /// A TCP port the container listens on: `run_pod` returns once it does.
    pub listens: Option<u16>,
    /// resources.limits.memory, in bytes.
    pub memory_limit: Option<i64>,
}

/// The labels the kubelet puts on a pod's sandbox and containers, by which
/// the agent knows a container's pod.
fn kubelet_labels(spec: &PodSpec, container: Option<&str>) -> std::collections::HashMap<String, String> {
    let mut labels: std::collections::HashMap<String, String> = [
        ("io.kubernetes.pod.name", spec.name.clone()),
        ("io.kubernetes.pod.namespace", "default".to_owned()),
        ("io.kubernetes.pod.uid", format!("{}-uid", spec.name)),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    if let Some(c) = container {
        labels.insert("io.kubernetes.container.name".into(), c.into());
    }
    labels
}

impl PodSpec {
    /// A pod whose container serves HTTP on `port` (busybox httpd).
    pub fn httpd(name: &str, port: u16) -> PodSpec {
        PodSpec {
            name: name.to_owned(),
            command: ["/bin/httpd", "-f", "-p", &port.to_string(), "-h", "/www"]
                .map(String::from)
                .to_vec(),
            listens: Some(port),
            ..Default::default()
        }
    }
}

/// A running pod.
#[derive(Debug, Clone)]
pub struct Pod {
    pub sandbox_id: String,
    pub container_id: String,
}

/// A private containerd; torn down (pods, daemon, bridge, cgroups, files)
/// on drop.
#[derive(Debug)]
pub struct Lab {
    pub dir: PathBuf,
    pub socket: PathBuf,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
    owns_dir: bool,
}

fn read_state(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// A gRPC channel over the unix socket at `socket`, connected on first use.
pub fn channel(socket: &Path) -> Channel {
    kns_proto::unix_endpoint(socket).connect_lazy()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Lab {
    /// Shared by the tests of one test binary: started on first use, torn
    /// down when the last test holding it finishes.
    pub fn shared() -> Arc<Lab> {
        static SHARED: Mutex<Weak<Lab>> = Mutex::new(Weak::new());
        let mut guard = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = guard.upgrade() {
            return l;
        }
        let lab =
            Arc::new(Lab::start_temp().unwrap_or_else(|e| panic!("cannot start the containerd lab: {e:#}")));
        *guard = Arc::downgrade(&lab);
        lab
    }

    /// A lab in a fresh temporary directory, removed on drop.
    pub fn start_temp() -> anyhow::Result<Lab> {
        let dir = tempfile::Builder::new().prefix("kns-lab-").tempdir()?.keep();
        let mut lab = Lab::start(&dir)?;
        lab.owns_dir = true;
        Ok(lab)
    }

    /// Starts containerd with its state under `dir` and imports the test
    /// image. Fails with the fix when containerd is not installed.
    pub fn start(dir: &Path) -> anyhow::Result<Lab> {
        crate::require_root();
        for tool in ["containerd", "ctr", "runc"] {
            if Command::new(tool).arg("--version").output().is_err() {
                bail!(
                    "`{tool}` is not installed: apt-get install containerd runc containernetworking-plugins busybox-static"
                );
            }
        }
        if !Path::new("/usr/lib/cni/bridge").exists() {
            bail!("/usr/lib/cni/bridge is missing: apt-get install containernetworking-plugins");
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let tag = format!("{:08x}", rand_u32());
        let bridge = format!("knsl{}", &tag[..8]);
        let subnet = format!("10.231.{}.0/24", rand_u32() % 250 + 1);
        let socket = dir.join("containerd.sock");
        let net_d = dir.join("cni/net.d");
        std::fs::create_dir_all(&net_d)?;
        std::fs::write(
            net_d.join("10-kns-lab.conflist"),
            serde_json::to_vec_pretty(&serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "kns-lab",
                "plugins": [{
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": subnet }]],
                        "dataDir": dir.join("cni/ipam"),
                    },
                }],
            }))?,
        )?;
        let d = dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
"#
        );
        std::fs::write(dir.join("config.toml"), config)?;
        std::fs::write(dir.join("bridge"), &bridge)?;
        std::fs::write(dir.join("cgroup-parent"), format!("kns-lab-{tag}"))?;

        spawn_daemon(&dir)?;
        let rt = runtime();
        let mut client = RuntimeServiceClient::new(rt.block_on(async { channel(&socket) }));
        let ready = wait_cri(&rt, &mut client);
        let lab = Lab {
            dir: dir.clone(),
            socket: socket.clone(),
            rt,
            client,
            owns_dir: false,
        };
        if !ready {
            let logs = std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
            bail!("containerd's CRI did not answer within 30 s; its log:\n{logs}");
        }
        let archive = dir.join("busybox-image.tar");
        crate::image::build(&crate::image::busybox_spec(IMAGE), &archive)?;
        lab.import_image(&archive)?;
        Ok(lab)
    }

    /// containerd's PID.
    pub fn containerd_pid(&self) -> Option<i32> {
        read_state(&self.dir, "containerd.pid")?.parse().ok()
    }

    /// The cgroup parent of the lab's pods, as given to the runtime.
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", read_state(&self.dir, "cgroup-parent").unwrap_or_default())
    }

    /// The CNI bridge the lab's pods attach to.
    pub fn bridge(&self) -> String {
        read_state(&self.dir, "bridge").unwrap_or_default()
    }

    fn sandbox_config(&self, spec: &PodSpec) -> PodSandboxConfig {
        let ns = NamespaceOption {
            network: if spec.host_network {
                NamespaceMode::Node
            } else {
                NamespaceMode::Pod
            } as i32,
            pid: if spec.host_pid {
                NamespaceMode::Node
            } else {
                NamespaceMode::Container
            } as i32,
            ipc: if spec.host_ipc {
                NamespaceMode::Node
            } else {
                NamespaceMode::Pod
            } as i32,
            target_id: String::new(),
        };
        let logs = self.dir.join("logs").join(&spec.name);
        let _ = std::fs::create_dir_all(&logs);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: spec.name.clone(),
                uid: format!("{}-uid", spec.name),
                namespace: "default".into(),
                attempt: 0,
            }),
            // runc refuses a hostname without a private UTS namespace.
            hostname: if spec.host_network {
                String::new()
            } else {
                spec.name.clone()
            },
            log_directory: logs.display().to_string(),
            labels: kubelet_labels(spec, None),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns),
                    privileged: spec.privileged,
                }),
            }),
            ..Default::default()
        }
    }

    /// Runs a pod and its container, as the kubelet would, and records the
    /// sandbox for teardown.
    pub fn run_pod(&self, spec: &PodSpec) -> anyhow::Result<Pod> {
        let sandbox_config = self.sandbox_config(spec);
        let mut c = self.client.clone();
        let ns = sandbox_config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let pod = self.rt.block_on(async {
            let sandbox_id = c
                .run_pod_sandbox(RunPodSandboxRequest {
                    config: Some(sandbox_config.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .context("RunPodSandbox")?
                .into_inner()
                .pod_sandbox_id;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join("pods"))?;
            std::io::Write::write_all(&mut f, format!("{sandbox_id}\n").as_bytes())?;
            let container_id = c
                .create_container(CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    config: Some(ContainerConfig {
                        metadata: Some(ContainerMetadata {
                            name: "app".into(),
                            attempt: 0,
                        }),
                        image: Some(ImageSpec {
                            image: if spec.image.is_empty() {
                                IMAGE.into()
                            } else {
                                spec.image.clone()
                            },
                            ..Default::default()
                        }),
                        command: spec.command.clone(),
                        args: spec.args.clone(),
                        envs: spec
                            .env
                            .iter()
                            .map(|(k, v)| KeyValue {
                                key: k.clone(),
                                value: v.clone(),
                            })
                            .collect(),
                        mounts: spec
                            .mounts
                            .iter()
                            .map(|(host, container, readonly)| Mount {
                                container_path: container.clone(),
                                host_path: host.display().to_string(),
                                readonly: *readonly,
                            })
                            .collect(),
                        log_path: "app.log".into(),
                        labels: kubelet_labels(spec, Some("app")),
                        linux: Some(LinuxContainerConfig {
                            resources: spec.memory_limit.map(|memory_limit_in_bytes| {
                                LinuxContainerResources {
                                    memory_limit_in_bytes,
                                }
                            }),
                            security_context: Some(LinuxContainerSecurityContext {
                                capabilities: Some(Capability {
                                    add_capabilities: spec.caps_add.clone(),
                                    drop_capabilities: spec.caps_drop.clone(),
                                }),
                                privileged: spec.privileged,
                                namespace_options: ns,
                                run_as_user: spec.run_as_user.map(|value| Int64Value { value }),
                                run_as_group: spec.run_as_group.map(|value| Int64Value { value }),
                                supplemental_groups: spec.supplemental_groups.clone(),
                                no_new_privs: spec.no_new_privs,
                                readonly_rootfs: spec.readonly_rootfs,
                                // Absent is Unconfined, as the kubelet
                                // sends it for a pod that names none.
                                seccomp: spec.seccomp_default.then(|| SecurityProfile {
                                    profile_type: ProfileType::RuntimeDefault.into(),
                                    localhost_ref: String::new(),
                                }),
                            }),
                        }),
                        ..Default::default()
                    }),
                    sandbox_config: Some(sandbox_config),
                })
                .await
                .context("CreateContainer")?
                .into_inner()
                .container_id;
            c.start_container(StartContainerRequest {
                container_id: container_id.clone(),
            })
            .await
            .context("StartContainer")?;
            anyhow::Ok(Pod {
                sandbox_id,
                container_id,
            })
        })?;
        if let Some(port) = spec.listens {
            let pid = self.container_pid(&pod.container_id)?;
            // The server binds its port after StartContainer returns.
            anyhow::ensure!(
                crate::wait_until(Duration::from_secs(20), || crate::listens(pid, port)),
                "{}: nothing listens on port {port} 20 s after the start",
                spec.name
            );
        }
        Ok(pod)
    }

    /// A container's host PID, from the runtime's verbose status (as the
    /// agent finds it).
    pub fn container_pid(&self, id: &str) -> anyhow::Result<i32> {
        let mut c = self.client.clone();
        let resp = self
            .rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            }))
            .context("ContainerStatus")?
            .into_inner();
        let info: serde_json::Value =
            serde_json::from_str(resp.info.get("info").context("no verbose info")?)?;
        info["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .and_then(|p| i32::try_from(p).ok())
            .context("the verbose info has no pid (is the container running?)")
            .inspect(|&pid| {
                // StartContainer can return while the process is still
                // runc's init, whose capabilities and identity are not yet
                // the container's (execve sets them).
                crate::wait_until(Duration::from_secs(10), || {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .map_or(true, |c| c.trim() != "runc:[2:INIT]")
                });
            })
    }

    /// Imports an OCI image archive into the lab's containerd.
    pub fn import_image(&self, archive: &Path) -> anyhow::Result<()> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(archive)
            .output()?;
        if !out.status.success() {
            bail!(
                "ctr images import {} failed: {}",
                archive.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops a container (it stays known to the runtime, EXITED).
    pub fn stop_container(&self, id: &str) -> anyhow::Result<()> {
        let mut c = self.client.clone();
        self.rt.block_on(c.stop_container(StopContainerRequest {
            container_id: id.to_owned(),
            timeout: 0,
        }))?;
        Ok(())
    }

    /// Stops containerd only (its containers keep running under their
    /// shims), as when the runtime restarts on a node.
    pub fn stop_daemon(&self) {
        if let Some(pid) = self.containerd_pid() {
            stop_pid(pid);
        }
    }

    /// Removes everything the lab made.
    pub fn teardown(&self) {
        teardown_dir(&self.dir, &self.rt, self.client.clone());
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Tears down a lab started by another process (the demo's `down`).
    pub fn down(dir: &Path) {
        let rt = runtime();
        let client = RuntimeServiceClient::new(rt.block_on(async { channel(&dir.join("containerd.sock")) }));
        teardown_dir(dir, &rt, client);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn stop_pid(pid: i32) {
    let p = Pid::from_raw(pid);
    if kill(p, Signal::SIGTERM).is_err() {
        return;
    }
    let gone = crate::wait_until(Duration::from_secs(10), || !crate::running_pid(pid));
    if !gone {
        let _ = kill(p, Signal::SIGKILL);
    }
}

/// Starts containerd on the lab's config, in its own process group, and
/// records its PID.
fn spawn_daemon(dir: &Path) -> anyhow::Result<()> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))?;
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting containerd")?;
    std::fs::write(dir.join("containerd.pid"), child.id().to_string())?;
    Ok(())
}

fn wait_cri(rt: &tokio::runtime::Runtime, client: &mut RuntimeServiceClient<Channel>) -> bool {
    crate::wait_until(Duration::from_secs(30), || {
        rt.block_on(client.version(VersionRequest::default())).is_ok()
    })
}

fn teardown_dir(dir: &Path, rt: &tokio::runtime::Runtime, mut client: RuntimeServiceClient<Channel>) {
    let pods = read_state(dir, "pods").unwrap_or_default();
    let daemon_alive = || {
        read_state(dir, "containerd.pid")
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(crate::running_pid)
    };
    // Pods are removed through the runtime, which also releases their
    // network namespaces and CNI addresses: bring a stopped daemon back.
    if !pods.trim().is_empty() && !daemon_alive() && spawn_daemon(dir).is_ok() {
        wait_cri(rt, &mut client);
    }
    let alive = daemon_alive();
    if alive {
        for id in pods.lines().filter(|l| !l.is_empty()) {
            let mut c = client.clone();
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(20), async {
                    let _ = c
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: id.to_owned(),
                        })
                        .await;
                    let _ = c
                        .remove_pod_sandbox(RemovePodSandboxRequest {
                            pod_sandbox_id: id.to_owned(),
                        })
                        .await;
                })
                .await
            });
        }
    } else {
        // The daemon could not be brought back, but its shims and
        // containers may still run: kill every process in the lab's cgroups.
        kill_cgroup_procs(dir);
    }
    if let Some(pid) = read_state(dir, "containerd.pid").and_then(|p| p.parse::<i32>().ok()) {
        stop_pid(pid);
    }
    kill_shims(dir);
    let _ = std::fs::remove_file(dir.join("pods"));
    if let Some(bridge) = read_state(dir, "bridge") {
        let _ = Command::new("ip")
            .args(["link", "del", &bridge])
            .stderr(Stdio::null())
            .status();
    }
    remove_cgroups(dir);
    // Mounts containerd may have left (sandbox /dev/shm) would block removal.
    if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
        let prefix = dir.display().to_string();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for m in points {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The lab's cgroup parent in each hierarchy: with the cgroupfs driver
/// runc makes it at the same path in every one (each v1 controller's and
/// the unified one on a hybrid node, the unified one alone on a v2 node).
fn cgroup_dirs(dir: &Path) -> Vec<PathBuf> {
    let Some(parent) = read_state(dir, "cgroup-parent").filter(|p| !p.is_empty()) else {
        return Vec::new();
    };
    crate::agent::cgroup_mounts()
        .into_iter()
        .map(|m| m.path.join(&parent))
        .filter(|p| p.is_dir())
        .collect()
}

fn kill_cgroup_procs(dir: &Path) {
    for root in cgroup_dirs(dir) {
        for procs in walk(&root).into_iter().map(|d| d.join("cgroup.procs")) {
            for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
                if let Ok(p) = pid.trim().parse::<i32>() {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
        }
    }
}

/// containerd-shim-runc-v2 processes started for this lab (their command
/// line names the lab's socket).
fn kill_shims(dir: &Path) {
    let needle = dir.join("containerd.sock").display().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("containerd-shim") && cmdline.contains(&needle) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        if let Ok(entries) = std::fs::read_dir(&dirs[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        i += 1;
    }
    dirs
}

fn remove_cgroups(dir: &Path) {
    for root in cgroup_dirs(dir) {
        // Deepest first: a cgroup directory can only go once it is empty,
        // and killed tasks take a moment to leave it (EBUSY until then).
        crate::wait_until(Duration::from_secs(10), || {
            let mut dirs = walk(&root);
            dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
            !root.exists()
        });
    }
}

/// A value that differs between labs: PID and clock mixed, so labs of
/// concurrent test binaries and of successive runs do not collide.
fn rand_u32() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let x = (u64::from(std::process::id()) << 32) ^ nanos;
    (x ^ (x >> 29)).wrapping_mul(0xbf58476d1ce4e5b9) as u32 ^ (x >> 32) as u32
}
