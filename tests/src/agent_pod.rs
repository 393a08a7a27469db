//! The agent image run as the DaemonSet runs it: scripts/image's archive,
//! imported into a real containerd, and started from the DaemonSet's own
//! container spec mapped to the CRI as the kubelet maps it (command, args,
//! env, securityContext, resources, hostPath mounts, hostPID), so any
//! drift between the manifest and the image fails. The agent is then
//! reached where the kubelet's port-forward reaches it, on 127.0.0.1:7469
//! inside the pod's own network namespace.
//!
//! Test-only patches, as a kustomize overlay would make them: KNS_NODE_PID
//! (PID 1 is unreadable on these machines; the test process, visible
//! through hostPID, is the node reference), the CRI socket directory (the
//! lab's containerd), and, where no API server is given,
//! KNS_INSECURE_SKIP_AUTHZ. With the fake API server the pod gets its
//! ServiceAccount mount and in-cluster address as the kubelet gives them,
//! and the image's defaults check every caller. The pod is bound to a
//! node, as the scheduler binds it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1 as k8s;
use kns_plugin::kube::manifests::{self, Object};

use crate::bins::plugin;
use crate::containerd::{Lab, Pod, PodSpec};
use crate::kubeapi::{FakeApi, IN_POD_PORT};
use crate::{kubelet, listens_on_loopback, wait_until};

/// Where scripts/test has scripts/image write the archive.
pub fn archive() -> PathBuf {
    built("kns-agent-image.tar", "")
}

/// The toolbox variant's archive, which scripts/test builds beside it.
pub fn toolbox_archive() -> PathBuf {
    built("kns-agent-toolbox-image.tar", "--toolbox ")
}

fn built(file: &str, flag: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target").join(file);
    assert!(
        p.exists(),
        "{} is missing: build it with `scripts/image {flag}target/{file}` (scripts/test does)",
        p.display()
    );
    p
}

/// The DaemonSet's pod template, from the embedded manifests.
pub fn manifest_pod() -> k8s::PodSpec {
    manifests::parse()
        .unwrap()
        .into_iter()
        .find_map(|o| match o {
            Object::DaemonSet(d) => d.spec?.template.spec,
            _ => None,
        })
        .unwrap()
}

/// The manifest's agent address, which the test does not change.
fn manifest_listen(c: &k8s::Container) -> String {
    let args = c.args.clone().unwrap_or_default();
    let i = args
        .iter()
        .position(|a| a == "--listen")
        .expect("--listen in args");
    args[i + 1].clone()
}

/// An agent running in its own pod of the lab.
pub struct AgentPod {
    pub lab: Arc<Lab>,
    pub pod: Pod,
    pub pid: i32,
    /// What the plugin dials from inside the pod's network namespace.
    pub addr: String,
    /// `container/ID` of the pod the tests enter.
    pub target: String,
    /// hostPath directories the runtime created for the pod (as on a node
    /// without that runtime), removed afterwards, deepest first.
    pub created: Vec<PathBuf>,
    /// The container's log file.
    log: PathBuf,
}

impl AgentPod {
    /// Runs the DaemonSet's container `agent` (after `patch`, a test-only
    /// overlay) as pod `name`, and waits until it listens where the
    /// manifest says. With `api`, the pod reaches it as its API server;
    /// without, callers go unchecked.
    pub fn start(
        lab: &Arc<Lab>,
        name: &str,
        target: &Pod,
        api: Option<&FakeApi>,
        patch: impl FnOnce(&mut k8s::PodSpec),
    ) -> AgentPod {
        let mut pod = manifest_pod();
        kubelet::set_env(
            &mut pod.containers[0],
            "KNS_NODE_PID",
            &std::process::id().to_string(),
        )
        .unwrap();
        kubelet::set_host_path(&mut pod, "containerd", lab.dir.clone()).unwrap();
        // No kubectl-ns-policy ConfigMap: the kubelet mounts an empty directory.
        let policy = lab.dir.join(format!("{name}-policy"));
        std::fs::create_dir_all(&policy).unwrap();
        kubelet::set_config_map(&mut pod, "policy", policy).unwrap();
        if api.is_none() {
            kubelet::set_env(&mut pod.containers[0], "KNS_INSECURE_SKIP_AUTHZ", "true").unwrap();
        }
        pod.node_name = Some("lab-node".into());
        assert_eq!(
            pod.containers[0].image.as_deref(),
            Some(manifests::default_image().as_str()),
            "the archive is tagged as the manifest's image"
        );
        patch(&mut pod);
        let listen = manifest_listen(&pod.containers[0]);
        // The plugin takes the agent's own address form.
        let addr = listen.clone();
        let mut spec: PodSpec = kubelet::pod_spec(name, &pod, &pod.containers[0].name).unwrap();
        if let Some(api) = api {
            kubelet::service_account(
                &mut spec,
                &pod,
                api.service_account_dir(),
                "127.0.0.1",
                IN_POD_PORT,
            )
            .unwrap();
        }
        let created = host_dirs_take(spec.mounts.iter().map(|(host, _, _)| host.as_path()));
        let log = lab.dir.join(format!("logs/{name}/app.log"));
        let p = lab
            .run_pod(&spec)
            .unwrap_or_else(|e| panic!("the agent pod did not start: {e:#}\nits log: {}", read(&log)));
        let pid = lab.container_pid(&p.container_id).unwrap();
        if let Some(api) = api {
            api.serve_in_netns(pid);
        }
        let port = listen.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || listens_on_loopback(pid, port)),
            "the agent in its pod never listened on {listen} in the pod's network namespace; its log: {}",
            read(&log)
        );
        AgentPod {
            lab: lab.clone(),
            pod: p,
            pid,
            addr,
            target: format!("container/{}", target.container_id),
            created,
            log,
        }
    }

    /// `kubectl-ns exec --agent ADDR container/TARGET FLAGS -- CMD`, run
    /// in the agent pod's network namespace as the kubelet's port-forward
    /// connects (the plugin itself never enters namespaces).
    pub fn exec(&self, flags: &[&str], cmd: &[&str]) -> Output {
        self.exec_in(&self.target, flags, cmd)
    }

    /// The same command, to spawn: nsenter joins the namespace and execs
    /// the plugin, so the child is the plugin itself.
    pub fn exec_command(&self, flags: &[&str], cmd: &[&str]) -> Command {
        self.exec_command_in(&self.target, flags, cmd)
    }

    /// `exec` into another target (`container/ID`, `pid/PID`, `node`).
    pub fn exec_in(&self, target: &str, flags: &[&str], cmd: &[&str]) -> Output {
        self.exec_command_in(target, flags, cmd)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    fn exec_command_in(&self, target: &str, flags: &[&str], cmd: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.pid))
            .arg("--")
            .arg(plugin())
            .args(["exec", "--agent", &self.addr, target])
            .args(flags)
            .arg("--")
            .args(cmd);
        c
    }

    /// The agent container's log so far.
    pub fn log(&self) -> String {
        read(&self.log)
    }

    /// The readiness probe's exec command, run in the agent container's
    /// mount and network namespaces as the runtime runs an exec probe.
    pub fn probe(&self, command: &[String]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-n", "--"])
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }
}

impl Drop for AgentPod {
    fn drop(&mut self) {
        let _ = self.lab.stop_container(&self.pod.container_id);
        host_dirs_release(&self.created);
    }
}

/// The hostPath directories that agent pods of this test process made
/// (missing on this machine, so the runtime creates them), with how many
/// running pods use each: tests run in parallel, and one pod's end must
/// not remove a directory another pod is being started with.
static HOST_DIRS: std::sync::Mutex<BTreeMap<PathBuf, usize>> = std::sync::Mutex::new(BTreeMap::new());

/// Counts the pod in for each missing (or already counted) ancestor of
/// `mounts`; returns them deepest first.
fn host_dirs_take<'a>(mounts: impl Iterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut dirs = HOST_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    let mut taken: Vec<PathBuf> = mounts
        .flat_map(Path::ancestors)
        .filter(|a| !a.exists() || dirs.contains_key(*a))
        .map(Path::to_path_buf)
        .collect();
    taken.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    taken.dedup();
    for d in &taken {
        *dirs.entry(d.clone()).or_default() += 1;
    }
    taken
}

/// Counts the pod out; the last one out removes what is still empty.
fn host_dirs_release(taken: &[PathBuf]) {
    let mut dirs = HOST_DIRS.lock().unwrap_or_else(|e| e.into_inner());
    for d in taken {
        let Some(n) = dirs.get_mut(d) else { continue };
        *n -= 1;
        if *n == 0 {
            dirs.remove(d);
            // Only if still empty: nothing but these tests put anything there.
            let _ = std::fs::remove_dir(d);
        }
    }
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
