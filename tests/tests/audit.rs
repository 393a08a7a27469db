//! `kubectl ns audit` end to end: real containerd pods in the node's
//! network, PID and IPC namespaces and isolated ones, a container whose
//! process joined the node's network namespace (drift), one the runtime
//! ran isolated though its spec says hostNetwork (drift the other way), one
//! no pod in the API owns, and a pod on a node without an agent; the fake
//! API serves the specs. The "node" is this test process: the agent's node
//! reference (see `kns_tests::agent`). Each behaviour is a test of its
//! own on that node, built afresh by `scene`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use kns_tests::agent::AGENT_PORT;
use kns_tests::bins::{stderr, stdout};
use kns_tests::cluster::{AGENT_NAMESPACE, NODE, OneNode};
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::{agent_pod, running_pod};
use kns_tests::{require_root, wait_until};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/audit.json");

fn sleeper(name: &str) -> PodSpec {
    PodSpec {
        name: name.into(),
        command: vec!["/bin/sleep".into(), "1000".into()],
        ..Default::default()
    }
}

/// The pod the API serves for a lab pod: running container `app` with
/// `id`, its spec changed by `spec`.
fn api_pod(
    name: &str,
    node: &str,
    id: &str,
    spec: impl FnOnce(&mut k8s_openapi::api::core::v1::PodSpec),
) -> Pod {
    let mut p = running_pod("default", name, node, &[("app", id)]);
    spec(p.spec.as_mut().expect("spec"));
    p
}

fn privileged(c: &mut Container) {
    c.security_context = Some(SecurityContext {
        privileged: Some(true),
        ..Default::default()
    });
}

/// The JSON with what changes from run to run (container IDs) replaced.
fn normalized(out: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(out).expect("audit -o json prints JSON");
    for f in v["findings"].as_array_mut().expect("findings") {
        if f["container_id"].is_string() {
            f["container_id"] = "<id>".into();
        }
    }
    v
}

/// The node of every scenario, as it was when they were one test: the
/// agent's pod, lab pods in the node's network, PID and IPC namespaces, a
/// drifted one, one whose runtime ignored hostNetwork, a stray, and a pod
/// on `ghost-node`, which has no agent. Scenarios run one at a time, each
/// on a fresh node: every container in the lab's containerd is on the node
/// the agent audits, so two at once would see each other's pods.
struct Scene {
    c: OneNode,
    /// Dropped last: the next scenario starts once this one's lab is gone.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

fn scene() -> Scene {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let c = OneNode::start("audit-isolated", 8190);
    c.add_agent_pod("kubectl-ns-agent-a1", c.agent.pid());
    let lab = Lab::shared();
    let run = |spec: PodSpec| {
        lab.run_pod(&spec)
            .unwrap_or_else(|e| panic!("{}: {e:#}", spec.name))
    };

    let hostnet = run(PodSpec {
        host_network: true,
        ..sleeper("audit-hostnet")
    });
    let hostpid = run(PodSpec {
        host_pid: true,
        ..sleeper("audit-hostpid")
    });
    let hostipc = run(PodSpec {
        host_ipc: true,
        ..sleeper("audit-hostipc")
    });
    // A privileged hostPID container that moves into the node's network
    // namespace, as `nsenter -t 1 -n -- daemon` does on a real node.
    let node_pid = std::process::id().to_string();
    let drift = run(PodSpec {
        host_pid: true,
        privileged: true,
        command: [
            "/bin/busybox",
            "nsenter",
            "-t",
            &node_pid,
            "-n",
            "--",
            "/bin/sleep",
            "1000",
        ]
        .map(String::from)
        .to_vec(),
        ..sleeper("audit-drift")
    });
    // Isolated here, while its spec will say hostNetwork: a runtime that
    // did not honour it.
    let ignored = run(sleeper("audit-ignored"));
    // Runs on the node, but no pod in the API owns it.
    let _stray = run(sleeper("audit-stray"));

    c.api
        .add_pod(api_pod("audit-hostnet", NODE, &hostnet.container_id, |s| {
            s.host_network = Some(true)
        }));
    c.api
        .add_pod(api_pod("audit-hostpid", NODE, &hostpid.container_id, |s| {
            s.host_pid = Some(true)
        }));
    c.api
        .add_pod(api_pod("audit-hostipc", NODE, &hostipc.container_id, |s| {
            s.host_ipc = Some(true)
        }));
    c.api
        .add_pod(api_pod("audit-drift", NODE, &drift.container_id, |s| {
            s.host_pid = Some(true);
            privileged(&mut s.containers[0]);
        }));
    c.api
        .add_pod(api_pod("audit-ignored", NODE, &ignored.container_id, |s| {
            s.host_network = Some(true)
        }));
    // A node with no agent: its pods are not observed, never clean.
    c.api.add_node("ghost-node");
    c.api.add_pod(api_pod("audit-ghost", "ghost-node", "feed", |s| {
        s.host_pid = Some(true)
    }));
    Scene {
        c,
        _one_at_a_time: guard,
    }
}

#[test]
fn audit_json_reports_declared_observed_and_drifted_host_namespaces() {
    let Scene { c, .. } = &scene();
    let o = c.api.kns(&["audit", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("node ghost-node not observed: node ghost-node has no kubectl-ns agent"),
        "{}",
        stderr(&o)
    );
    let got = normalized(&o.stdout);
    if std::env::var_os("KNS_BLESS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(GOLDEN).expect("golden file (KNS_BLESS=1 writes it)"))
            .unwrap();
    assert_eq!(
        got,
        want,
        "audit JSON differs from {GOLDEN}:\n{}",
        serde_json::to_string_pretty(&got).unwrap()
    );
}

/// The table leads with the worst, and names the drift.
#[test]
fn audit_table_leads_with_the_worst() {
    let Scene { c, .. } = &scene();
    let o = c.api.kns(&["audit", "-A"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let first = table.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with("critical"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains("drift") && l.contains("default/audit-drift") && l.contains("net")),
        "{table}"
    );
}

#[test]
fn audit_fail_on_gates_on_the_kinds_named_only() {
    let Scene { c, .. } = &scene();
    let code = |args: &[&str]| c.api.kns(args).status.code();
    assert_eq!(code(&["audit", "-A", "--fail-on", "host-port,drift"]), Some(1));
    assert_eq!(code(&["audit", "--fail-on", "unknown-workload"]), Some(1));
    assert_eq!(
        code(&["audit", "-A", "--fail-on", "host-port,capability"]),
        Some(0)
    );
    assert_eq!(
        code(&["audit", "--node", NODE, "--fail-on", "not-observed"]),
        Some(0)
    );
}

/// A label selector narrows the audit: unknown workloads are not reported
/// for a partial listing.
#[test]
fn audit_with_a_label_selector_reports_no_unknown_workload() {
    let Scene { c, .. } = &scene();
    let o = c
        .api
        .kns(&["audit", "-l", "app=none", "--fail-on", "unknown-workload"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn audit_fail_on_an_unknown_kind_is_a_usage_error() {
    let Scene { c, .. } = &scene();
    let o = c.api.kns(&["audit", "--fail-on", "drfit"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("drift"), "{}", stderr(&o));
}

/// The node's inventory: the node's own network namespace holds the
/// hostNetwork pod and the one that joined it; the stray is named as what
/// no pod owns.
#[test]
fn ls_node_lists_its_namespaces_with_their_containers() {
    let Scene { c, .. } = &scene();
    let o = c.api.kns(&["ls", &format!("node/{NODE}"), "-o", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["namespaces"].as_array().expect("namespaces");
    let host_net = rows
        .iter()
        .find(|r| r["kind"] == "net" && r["host"] == true)
        .expect("the node's network namespace is listed");
    assert_eq!(
        host_net["containers"],
        serde_json::json!(["default/audit-drift/app", "default/audit-hostnet/app"]),
        "{host_net}"
    );
    assert!(host_net["processes"].as_u64() > Some(2), "{host_net}");
    assert!(
        rows.iter()
            .any(|r| r["containers"] == serde_json::json!(["default/audit-stray/app (no pod in the API)"])),
        "{v}"
    );
    assert!(
        rows.iter()
            .all(|r| r["processes"].as_u64() >= Some(1) && r["pid"].as_i64() >= Some(1)),
        "{v}"
    );
    let o = c.api.kns(&["ls", &format!("node/{NODE}")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("default/audit-hostipc/app"), "{}", stdout(&o));
}

/// ls over many pods, through the same fan-out as the audit: one row per
/// container, the node without an agent reported.
#[test]
fn ls_many_pods_gives_each_containers_verdicts() {
    let Scene { c, .. } = &scene();
    let o = c.api.kns(&["ls", "-o", "json"]);
    assert_eq!(
        o.status.code(),
        Some(255),
        "ghost-node has no agent: {}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("node ghost-node not observed"),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let verdict = |pod: &str, kind: &str| {
        let p = v
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pod"] == pod)
            .unwrap_or_else(|| panic!("{pod} in {v}"));
        let ns = p["containers"][0]["namespaces"].as_array().unwrap();
        ns.iter().find(|n| n["kind"] == kind).unwrap()["verdict"].clone()
    };
    assert_eq!(verdict("default/audit-hostnet", "net"), "host");
    assert_eq!(verdict("default/audit-drift", "net"), "host");
    assert_eq!(verdict("default/audit-isolated", "net"), "private");
    assert_eq!(verdict("default/audit-hostipc", "ipc"), "host");
    let o = c.api.kns(&["ls", "-A", "--node-timeout", "5s"]);
    let table = stdout(&o);
    assert!(table.starts_with("POD "), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("default/audit-hostpid ")),
        "{table}"
    );
}

#[test]
fn ls_a_named_pod_in_all_namespaces_is_a_usage_error() {
    let Scene { c, .. } = &scene();
    let o = c.api.kns(&["ls", "audit-hostnet", "-A"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// A node whose agent accepts connections but never answers: the audit
/// reports it after --node-timeout and still reports every other node.
/// The timeout covers each node's whole call, the real node's too, so it
/// leaves room for a loaded machine; without one the run never ends.
#[test]
fn audit_reports_a_silent_node_after_node_timeout() {
    let Scene { c, .. } = &scene();
    let silent = Silent::start();
    c.api.add_node("slow-node");
    c.api.add_pod(agent_pod("kubectl-ns-agent-slow", "slow-node"));
    c.api
        .forward(AGENT_NAMESPACE, "kubectl-ns-agent-slow", silent.pid());
    c.api.add_pod(api_pod("audit-slow", "slow-node", "beef", |_| ()));
    let started = Instant::now();
    let o = c.api.kns(&["audit", "-A", "-o", "json", "--node-timeout", "3s"]);
    let took = started.elapsed();
    drop(silent);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        took < Duration::from_secs(15),
        "the slow node held the audit up: {took:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let node = |name: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == name)
            .unwrap_or_else(|| panic!("{name} in {v}"))
            .clone()
    };
    assert_eq!(node("slow-node")["error"], "no answer within 3s", "{v}");
    assert_eq!(node(NODE)["observed"], true, "{v}");
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["pod"] == "audit-slow" && f["kind"] == "not-observed"),
        "{v}"
    );
}

/// A process in a network namespace of its own that accepts a connection
/// on the agent's port and never answers, as a hung agent would (busybox
/// nc, its stdin a pipe that stays open); killed on drop.
struct Silent(std::process::Child);

impl Silent {
    /// Returns once it listens.
    fn start() -> Silent {
        let child = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec busybox nc -l -p \"$0\"",
            ])
            .arg(AGENT_PORT.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the silent listener");
        let silent = Silent(child);
        let listening = wait_until(Duration::from_secs(10), || {
            kns_tests::listens(silent.pid(), AGENT_PORT)
        });
        assert!(listening, "the silent listener did not start");
        silent
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
