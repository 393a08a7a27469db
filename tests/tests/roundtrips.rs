//! Round trips to the API server, counted on both sides (the fake API
//! server's request log and the plugin's `KNS_TIMINGS=1` line), and the
//! node → agent pod cache that saves one of them: a warm `exec POD` is one
//! pod GET and, side by side with it, one port-forward to the agent the
//! cache names, then one gRPC call; a pod no longer where the cache says is
//! followed to its node.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PodCondition;
use kns_tests::agent::Agent;
use kns_tests::bins::stderr;
use kns_tests::cluster::{AGENT_NAMESPACE, NODE, OneNode};
use kns_tests::kubeapi::{agent_pod, running_pod};
use kns_tests::require_root;
use kns_tests::target::NsProcess;

/// A second node, for pods that move.
const OTHER: &str = "other-node";

/// The one-node cluster with agent pod `agent-1` forwarding to the agent.
fn cluster(pod: &str, port: u16) -> OneNode {
    let c = OneNode::start(pod, port);
    c.add_agent_pod("agent-1", c.agent.pid());
    c
}

fn kubectl_ns(c: &OneNode, args: &[&str]) -> Output {
    c.api
        .kns_command(args)
        .env("KNS_TIMINGS", "1")
        .output()
        .expect("run kubectl-ns")
}

/// The plugin's own count: (API requests, gRPC calls).
fn counted(o: &Output) -> (u32, u32) {
    let err = stderr(o);
    let line = err
        .lines()
        .find(|l| l.starts_with("kns-timings:"))
        .unwrap_or_else(|| panic!("no timings line in {err}"));
    let get = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    (get("api_calls"), get("grpc_calls"))
}

/// The API server's count, each request named by what it was for.
fn requests(c: &OneNode) -> Vec<String> {
    c.api
        .take_requests()
        .iter()
        .map(|r| {
            let path = r.split_whitespace().nth(1).unwrap_or("");
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            match parts.as_slice() {
                ["api", "v1", "namespaces", _, "pods", name, "portforward"] => format!("portforward {name}"),
                ["api", "v1", "namespaces", ns, "pods", name] => format!("get pod {ns}/{name}"),
                ["api", "v1", "namespaces", ns, "pods"] if query.contains("spec.nodeName") => {
                    format!("list agents {ns}")
                }
                ["api", "v1", "nodes", name] => format!("get node {name}"),
                _ => r.clone(),
            }
        })
        .collect()
}

/// [`requests`], the first `n` sorted: sent side by side, either may come
/// first.
fn requests_at_once(c: &OneNode, n: usize) -> Vec<String> {
    let mut r = requests(c);
    let n = n.min(r.len());
    r[..n].sort();
    r
}

fn exec_true(c: &OneNode) -> Output {
    let o = kubectl_ns(c, &["exec", &c.pod, "-n", "--", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

fn cache_file(c: &OneNode) -> PathBuf {
    c.api
        .cache_dir()
        .join("kubectl-ns")
        .join(format!("127.0.0.1_{}", c.api.addr.port()))
        .join(format!("agents-{AGENT_NAMESPACE}.json"))
}

#[test]
fn warm_exec_is_one_pod_get_one_port_forward_one_grpc_call() {
    require_root();
    let c = cluster("rt-warm", 8190);
    let pod = format!("get pod default/{}", c.pod);

    // Cold: the pod, then the agents on its node, then the port-forward.
    let o = exec_true(&c);
    assert_eq!(
        requests(&c),
        [
            pod.as_str(),
            "list agents kubectl-ns-system",
            "portforward agent-1"
        ]
    );
    assert_eq!(counted(&o), (3, 1));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache_file(&c)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Warm: the agent pod comes from the cache.
    let o = exec_true(&c);
    assert_eq!(requests_at_once(&c, 2), [pod.as_str(), "portforward agent-1"]);
    assert_eq!(counted(&o), (2, 1));

    // `ls` on the pod uses it too: one Inspect per running container.
    let o = kubectl_ns(&c, &["ls", &c.pod]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(requests_at_once(&c, 2), [pod.as_str(), "portforward agent-1"]);
    assert_eq!(counted(&o), (2, 1));
}

#[test]
fn a_warm_exec_opens_the_port_forward_while_the_pod_get_is_in_flight() {
    require_root();
    let c = cluster("rt-overlap", 8197);
    // Long enough that two requests sent in turn never wait together.
    c.api.set_latency(Duration::from_millis(200));
    exec_true(&c);
    assert_eq!(
        c.api.take_most_at_once(),
        1,
        "cold: each request waits for the one before"
    );
    exec_true(&c);
    assert_eq!(
        c.api.take_most_at_once(),
        2,
        "warm: the pod GET and the port-forward at once"
    );
}

#[test]
fn a_pod_now_on_another_node_is_followed_there_not_to_the_cached_agent() {
    require_root();
    let c = cluster("rt-moved", 8196);
    exec_true(&c);
    // The pod is recreated on another node (as a StatefulSet's pod is),
    // whose own agent the cache does not know yet.
    let lab = kns_tests::containerd::Lab::shared();
    let other = Agent::start_tcp_env(Some(lab.socket.to_str().unwrap()), &c.api.agent_env(OTHER));
    c.api.serve_in_netns(other.pid());
    c.api.add_node(OTHER);
    c.api.add_pod(agent_pod("agent-other", OTHER));
    c.api.forward(AGENT_NAMESPACE, "agent-other", other.pid());
    c.api.remove_pod("default", &c.pod).unwrap();
    c.api
        .add_pod(running_pod("default", &c.pod, OTHER, &[("app", &c.container_id)]));
    // The sessions an agent ran, once it has audited the end of each it
    // started: the end record may come just after the client exits.
    let sessions = |a: &Agent| {
        let count = |event: &str| a.audit().iter().filter(|r| r["event"] == event).count();
        kns_tests::wait_until(Duration::from_secs(10), || count("start") == count("end"));
        count("end")
    };
    let before = sessions(&c.agent);
    c.api.take_requests();

    let o = exec_true(&c);
    // The early port-forward to the cached agent is dropped unused when the
    // pod answers from elsewhere: by then sent, or still in its TLS
    // handshake, or not yet handed to the HTTP client.
    let early = "portforward agent-1";
    let r = requests(&c);
    let sent = r.iter().filter(|r| *r == early).count() as u32;
    assert_eq!(
        r.into_iter().filter(|r| r != early).collect::<Vec<_>>(),
        [
            "get pod default/rt-moved",
            &format!("list agents {AGENT_NAMESPACE}"),
            "portforward agent-other"
        ]
    );
    // The plugin counts what it hands to its HTTP client, so the early
    // request whenever the server saw it, and perhaps when it did not.
    let (api, grpc) = counted(&o);
    assert!(
        (3 + sent..=4).contains(&api),
        "the plugin counted {api} API requests; the server saw 3 and {sent} early"
    );
    assert_eq!(grpc, 1);
    assert_eq!(sessions(&other), 1, "the session ran on the pod's node");
    assert_eq!(sessions(&c.agent), before, "and not on the node the cache named");

    // From now on the cache names the new node: two requests, by the
    // plugin's count. The server's may still hold the dropped early one,
    // if the plugin wrote it just before it exited.
    let o = exec_true(&c);
    assert_eq!(counted(&o), (2, 1));
    let mut r: Vec<String> = requests(&c).into_iter().filter(|r| r != early).collect();
    r.sort();
    assert_eq!(r, ["get pod default/rt-moved", "portforward agent-other"]);
    assert_eq!(sessions(&other), 2);
    assert_eq!(sessions(&c.agent), before);
}

#[test]
fn a_replaced_agent_pod_is_looked_up_again() {
    require_root();
    let c = cluster("rt-gone", 8191);
    exec_true(&c);
    c.api.take_requests();
    // The DaemonSet replaced its pod: the cached one answers 404.
    c.api.remove_pod(AGENT_NAMESPACE, "agent-1").unwrap();
    c.add_agent_pod("agent-2", c.agent.pid());
    let o = exec_true(&c);
    assert_eq!(
        requests_at_once(&c, 2),
        [
            "get pod default/rt-gone",
            "portforward agent-1",
            "list agents kubectl-ns-system",
            "portforward agent-2"
        ]
    );
    assert_eq!(counted(&o), (4, 1));
    exec_true(&c);
    assert_eq!(
        requests_at_once(&c, 2),
        ["get pod default/rt-gone", "portforward agent-2"],
        "the new pod is cached"
    );
}

#[test]
fn an_agent_that_does_not_answer_is_looked_up_again() {
    require_root();
    let c = cluster("rt-silent", 8192);
    exec_true(&c);
    c.api.take_requests();
    // The cached pod still exists, but its agent restarts: not ready,
    // nothing listens on its port (a network namespace of its own with no
    // listener). Another agent pod serves the node.
    let silent = NsProcess::spawn(&["--net"], "exec sleep 100000");
    let mut stale = c.api.remove_pod(AGENT_NAMESPACE, "agent-1").unwrap();
    stale.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "False".into(),
        ..Default::default()
    }]);
    c.api.add_pod(stale);
    c.api.forward(AGENT_NAMESPACE, "agent-1", silent.pid);
    c.add_agent_pod("agent-2", c.agent.pid());
    let o = exec_true(&c);
    assert_eq!(
        requests_at_once(&c, 2),
        [
            "get pod default/rt-silent",
            "portforward agent-1",
            "list agents kubectl-ns-system",
            "portforward agent-2"
        ]
    );
    assert_eq!(counted(&o), (4, 1));

    // With no agent left to answer, the user hears why, not a gRPC error.
    c.api.remove_pod(AGENT_NAMESPACE, "agent-1").unwrap();
    c.api.remove_pod(AGENT_NAMESPACE, "agent-2").unwrap();
    c.add_agent_pod("agent-3", silent.pid);
    let o = kubectl_ns(&c, &["exec", &c.pod, "-n", "--", "true"]);
    assert_eq!(o.status.code(), Some(255));
    let err = stderr(&o);
    assert!(
        err.contains(
            "the port-forward to the agent pod kubectl-ns-system/agent-3 reached nothing on port 7469"
        ) && err.contains("describe pod agent-3"),
        "{err}"
    );
}

#[test]
fn a_corrupt_cache_is_ignored_and_replaced() {
    require_root();
    let c = cluster("rt-corrupt", 8193);
    let file = cache_file(&c);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"{\"nodes\": {\"rt-node\": 42").unwrap();
    let o = exec_true(&c);
    assert_eq!(counted(&o), (3, 1), "a corrupt cache is a cold one");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["nodes"][NODE]["pod"], "agent-1");
    c.api.take_requests();
    assert_eq!(counted(&exec_true(&c)), (2, 1));
}

#[test]
fn node_targets_count_their_round_trips_too() {
    require_root();
    let c = cluster("rt-node-target", 8194);
    let node = format!("node/{NODE}");
    let run = || {
        let o = kubectl_ns(&c, &["exec", &node, "-u", "--", "true"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut r = requests(&c);
        // The node GET and the agent lookup run at once: either comes first.
        r.sort();
        (r, counted(&o))
    };
    assert_eq!(
        run(),
        (
            vec![
                format!("get node {NODE}"),
                "list agents kubectl-ns-system".to_owned(),
                "portforward agent-1".to_owned()
            ],
            (3, 1)
        )
    );
    assert_eq!(
        run(),
        (
            vec![format!("get node {NODE}"), "portforward agent-1".to_owned()],
            (2, 1)
        )
    );
}

#[test]
fn latency_is_added_to_every_request() {
    require_root();
    let c = cluster("rt-latency", 8195);
    exec_true(&c);
    let latency = Duration::from_millis(150);
    c.api.set_latency(latency);
    // Lower bounds only, however loaded the machine: a warm exec's pod GET
    // and port-forward, side by side, take at least one latency; a cold
    // one's three requests in turn (pod GET, agent list, port-forward
    // upgrade) at least three.
    let start = Instant::now();
    let o = exec_true(&c);
    let took = start.elapsed();
    assert_eq!(counted(&o), (2, 1));
    assert!(took >= latency, "took {took:?}");
    std::fs::remove_dir_all(c.api.cache_dir()).unwrap();
    let start = Instant::now();
    let o = exec_true(&c);
    let took = start.elapsed();
    assert_eq!(counted(&o), (3, 1));
    assert!(took >= 3 * latency, "took {took:?}");
}

#[test]
fn a_cache_another_user_could_write_is_not_trusted() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let c = cluster("rt-untrusted", 8198);
    let file = cache_file(&c);
    exec_true(&c);
    let chmod = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let cold_then_warm = |why: &str| {
        c.api.take_requests();
        assert_eq!(counted(&exec_true(&c)), (3, 1), "{why}: a cold lookup");
        // Written afresh, the user's own again.
        assert_eq!(counted(&exec_true(&c)), (2, 1), "{why}: then warm");
    };

    chmod(&file, 0o666);
    cold_then_warm("a file others can write");
    let dir = file.parent().unwrap();
    chmod(dir, 0o777);
    c.api.take_requests();
    assert_eq!(counted(&exec_true(&c)), (3, 1), "a directory others can write");
    chmod(dir, 0o700);
    // A symlink, even to the user's own copy of the same entries.
    let copy = dir.join("copy.json");
    std::fs::rename(&file, &copy).unwrap();
    std::os::unix::fs::symlink(&copy, &file).unwrap();
    cold_then_warm("a symlink");
    assert!(!file.is_symlink(), "the symlink is replaced, not written through");
    // A FIFO, which a blocking open would wait on for ever.
    std::fs::remove_file(&file).unwrap();
    nix::unistd::mkfifo(&file, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    cold_then_warm("a FIFO");
}
