//! `kubectl ns exec -l` over 50 pods, through the fake API server (3 ms
//! added to every API request, the port-forwards included) and a real
//! agent into 50 real containerd containers, next to baselines measured in
//! the same run: one pod's `exec POD -n -- true`, and the same fan-out one
//! pod at a time (`--max-concurrent 1`).
//!
//! Run as root: `cargo build --release --workspace --bins && cargo bench -p
//! kns-tests --bench fanout` (or `./scripts/bench`); `KNS_BENCH_PODS=N`
//! changes the 50. Prints Markdown for docs/BENCHMARKS.md.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kns_tests::agent::Agent;
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::{FakeApi, agent_pod, running_pod};
use kns_tests::{median, require_root};

const NODE: &str = "fan-node";
const ROUNDS: usize = 7;

/// Wall time of one whole run, in ms; the run must succeed and, for a
/// fan-out, report every pod.
fn run(cmd: &mut Command, pods: usize) -> f64 {
    let start = Instant::now();
    let o = cmd.stdin(Stdio::null()).output().expect("spawn kubectl-ns");
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{cmd:?}: {err}");
    if pods > 1 {
        assert!(err.contains(&format!("{pods} succeeded")), "{err}");
    }
    ms
}

fn main() {
    require_root();
    let pods: usize = std::env::var("KNS_BENCH_PODS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let plugin = kns_tests::bins::plugin();
    let lab = Lab::start_temp().expect("containerd lab");
    let api = FakeApi::start();
    let agent = Agent::start_tcp_env(
        Some(lab.socket.to_str().expect("utf-8 path")),
        &api.agent_env(NODE),
    );
    api.serve_in_netns(agent.pid());
    api.add_node(NODE);
    api.add_pod(agent_pod("kubectl-ns-agent-f", NODE));
    api.forward("kubectl-ns-system", "kubectl-ns-agent-f", agent.pid());
    let t = Instant::now();
    for i in 0..pods {
        let p = lab
            .run_pod(&PodSpec {
                name: format!("fan-{i}"),
                command: vec!["/bin/sleep".into(), "3600".into()],
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("pod {i}: {e:#}"));
        let mut pod = running_pod("default", &format!("fan-{i}"), NODE, &[("app", &p.container_id)]);
        pod.metadata.labels = Some([("app".to_owned(), "fan".to_owned())].into());
        api.add_pod(pod);
    }
    eprintln!("{pods} pods started in {:.1}s", t.elapsed().as_secs_f64());
    api.set_latency(Duration::from_millis(3));
    let kc = api.kubeconfig_arg();
    let cache = api.cache_dir();
    let kns = |args: &[&str]| {
        let mut c = Command::new(&plugin);
        c.arg("exec")
            .args(["--kubeconfig", &kc])
            .args(args)
            .env("KUBECACHEDIR", &cache);
        c
    };
    let fan = |extra: &[&str]| {
        let mut args = vec!["-l", "app=fan"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-n", "--", "true"]);
        kns(&args)
    };
    // Warm the agent's and the plugin's caches as everyday use would.
    run(&mut kns(&["fan-0", "-n", "--", "true"]), 1);
    run(&mut fan(&[]), pods);
    let (mut one, mut parallel, mut serial) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        one.push(run(&mut kns(&["fan-0", "-n", "--", "true"]), 1));
        parallel.push(run(&mut fan(&[]), pods));
        serial.push(run(&mut fan(&["--max-concurrent", "1"]), pods));
    }
    let (one, parallel, serial) = (median(one), median(parallel), median(serial));
    println!(
        "\n`exec -l app=fan -n -- true` over {pods} pods on one node, through the fake API server with 3 ms \
         added to every request, into real containers; medians of {ROUNDS} alternating runs, whole process:\n"
    );
    println!("| run | wall | per pod | vs one pod's exec |");
    println!("|---|---|---|---|");
    let row = |name: &str, ms: f64, n: usize| {
        println!(
            "| {name} | {ms:.0} ms | {:.1} ms | {:.1}× |",
            ms / n as f64,
            ms / one
        );
    };
    row("`exec fan-0 -n -- true` (baseline: one pod)", one, 1);
    row("`exec -l`, default `--max-concurrent 16`", parallel, pods);
    row("`exec -l --max-concurrent 1` (one at a time)", serial, pods);
    println!(
        "\nThe fan-out runs {:.1}× faster than one pod at a time, and {pods} pods cost {:.1}× one pod's exec.",
        serial / parallel,
        parallel / one
    );
    drop(agent);
}
