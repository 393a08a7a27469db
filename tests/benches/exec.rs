//! kubectl-ns benchmarks, each side by side with a baseline measured in the
//! same run (these machines are noisy; only medians and ratios mean much).
//! The local rows are measured in several rounds (`--rounds N`, default 5),
//! and a goal counts as met only when every round meets it.
//!
//! The Kubernetes rows (`--kube-runs N` alternating runs per latency,
//! default 50) compare kubectl-ns with `kubectl exec` through the fake API
//! server at 0, 3 and 10 ms per request. `--only local` or `--only kube`
//! runs one set of rows.
//!
//! Run as root: `cargo build --release --workspace --bins && cargo bench -p kns-tests --bench exec -- --rounds 5`
//! (or `./scripts/bench`). Prints Markdown tables for docs/BENCHMARKS.md.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kns_tests::agent::Agent;
use kns_tests::bins;
use kns_tests::containerd::{Lab, PodSpec};
use kns_tests::kubeapi::{FakeApi, agent_pod, running_pod};
use kns_tests::median;
use kns_tests::target::NsProcess;

fn run_ok(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("spawn");
    let d = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    d
}

/// Median wall time of whole-process runs, alternating the two commands so
/// drift hits both alike.
fn latency(runs: usize, a: &mut Command, b: &mut Command) -> (f64, f64) {
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        run_ok(a);
        run_ok(b);
    }
    for _ in 0..runs {
        ta.push(run_ok(a).as_secs_f64() * 1e3);
        tb.push(run_ok(b).as_secs_f64() * 1e3);
    }
    (median(ta), median(tb))
}

/// Bytes per second of a command's stdout read through a pipe.
fn throughput(cmd: &mut Command) -> f64 {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(child.wait().unwrap().success());
    total as f64 / start.elapsed().as_secs_f64()
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// min / median / max of per-round figures.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.2} / {:.2} / {max:.2}", median(v.to_vec()))
}

/// Whether `ok` holds in every round, said as the docs say it.
fn verdict(v: &[f64], ok: impl Fn(f64) -> bool) -> String {
    let n = v.iter().filter(|x| ok(**x)).count();
    if n == v.len() {
        format!("met in all {n} rounds")
    } else {
        format!("**not met**: {n} of {} rounds", v.len())
    }
}

fn main() {
    kns_tests::require_root();
    let only = only_arg();
    if only.as_deref().is_none_or(|o| o == "local") {
        local_rows(kns_tests::count_arg("--rounds", 5));
    }
    if only.as_deref().is_none_or(|o| o == "kube") {
        kubernetes_path(
            &bins::plugin(),
            kns_tests::count_arg("--kube-runs", 50),
            &[0, 3, 10],
        );
    }
}

/// `--only local` or `--only kube`: one of the two sets of rows (default:
/// both).
fn only_arg() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default());
    if let Some(o) = &only {
        assert!(
            o == "local" || o == "kube",
            "--only takes `local` or `kube`, not `{o}`"
        );
    }
    only
}

/// exec -n and its stdout throughput against nsenter's, on a local agent
/// (unix socket) and a plain network-namespace target, in `rounds` rounds;
/// then the agent's memory.
fn local_rows(rounds: usize) {
    let target = NsProcess::spawn(&["--net"], "exec sleep 100000");
    let agent = Agent::start(None);
    let addr = agent.addr();
    let pid = target.pid.to_string();
    let tpid = format!("pid/{pid}");
    let plugin = bins::plugin();
    let runs = 200;

    let kns = |args: &[&str]| {
        let mut c = Command::new(&plugin);
        c.args(["exec", "--agent", &addr, &tpid, "-n", "--"]).args(args);
        c
    };
    let nsenter = |args: &[&str]| {
        let mut c = Command::new("nsenter");
        c.args(["-t", &pid, "-n", "--"]).args(args);
        c
    };

    let gib = "1073741824";
    let reps = 5;
    let (mut lat_k, mut lat_n, mut lat_r) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp_k, mut tp_n, mut tp_r) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "Local rows, per round (latency: median of {runs} alternating runs; throughput: median of {reps}):\n"
    );
    println!("| round | exec -n true | nsenter -n true | ratio | stdout GB/s | nsenter GB/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for round in 1..=rounds {
        let (k, n) = latency(runs, &mut kns(&["true"]), &mut nsenter(&["true"]));
        let (mut tk, mut tn) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            tk.push(throughput(&mut kns(&["head", "-c", gib, "/dev/zero"])));
            tn.push(throughput(&mut nsenter(&["head", "-c", gib, "/dev/zero"])));
        }
        let (gk, gn) = (median(tk) / 1e9, median(tn) / 1e9);
        println!(
            "| {round} | {k:.2} ms | {n:.2} ms | {:.2}x | {gk:.2} | {gn:.2} | {:.2}x |",
            k / n,
            gk / gn
        );
        lat_k.push(k);
        lat_n.push(n);
        lat_r.push(k / n);
        tp_k.push(gk);
        tp_n.push(gn);
        tp_r.push(gk / gn);
    }

    println!("\nSummary over {rounds} rounds (min / median / max of the per-round medians):\n");
    println!("| what | kubectl-ns | baseline | ratio | goal |");
    println!("|---|---|---|---|---|");
    println!(
        "| exec -n -- true, whole process | {} ms | nsenter: {} ms | {}x | <= 2x: {}; < 10 ms: {} |",
        spread(&lat_k),
        spread(&lat_n),
        spread(&lat_r),
        verdict(&lat_r, |r| r <= 2.0),
        verdict(&lat_k, |k| k < 10.0),
    );
    println!(
        "| stdout throughput, 1 GiB, unix socket | {} GB/s | nsenter into a pipe: {} GB/s | {}x | >= 1 GB/s: {}; >= 0.9x: {} |",
        spread(&tp_k),
        spread(&tp_n),
        spread(&tp_r),
        verdict(&tp_k, |g| g >= 1.0),
        verdict(&tp_r, |r| r >= 0.9),
    );

    let idle = rss_kib(agent.pid());
    let mut sessions: Vec<_> = (0..50)
        .map(|_| {
            kns(&["sleep", "30"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait until all 50 sessions run (each has a cgroup of its own).
    let all_up = kns_tests::wait_until(Duration::from_secs(30), || {
        agent
            .cgroup
            .sessions()
            .iter()
            .filter(|s| !s.starts_with("memory:"))
            .count()
            >= 50
    });
    assert!(all_up, "50 sessions did not start");
    let busy = rss_kib(agent.pid());
    for s in &mut sessions {
        let _ = s.kill();
        let _ = s.wait();
    }
    println!(
        "| agent RSS idle / with 50 sessions | {:.1} MiB / {:.1} MiB | - | - | idle <= 10 MiB: {} |",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0,
        if idle <= 10 * 1024 { "met" } else { "**not met**" }
    );
}

/// One `kubectl-ns` run's figures: wall time, and its `KNS_TIMINGS=1` line
/// as phase → ms (the round-trip counts included).
struct Run {
    wall: f64,
    timings: Vec<(String, f64)>,
}

fn timed(cmd: &mut Command) -> Run {
    let start = Instant::now();
    let o = cmd
        .env("KNS_TIMINGS", "1")
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    let wall = start.elapsed().as_secs_f64() * 1e3;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("kns-timings:"))
        .expect("timings line");
    let timings = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect();
    Run { wall, timings }
}

/// Medians of a set of runs, as a table row's cells.
fn summary(runs: &[Run]) -> (f64, String) {
    let mut phases: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for r in runs {
        for (k, v) in &r.timings {
            phases.entry(k).or_default().push(*v);
        }
    }
    let order = [
        "config",
        "lookup",
        "portforward",
        "grpc",
        "exec",
        "total",
        "api_calls",
        "grpc_calls",
    ];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|k| {
            let m = median(phases.remove(k)?);
            Some(if k.ends_with("_calls") {
                format!("{k} {m:.0}")
            } else {
                format!("{k} {m:.2}")
            })
        })
        .collect();
    (median(runs.iter().map(|r| r.wall).collect()), parts.join(", "))
}

/// Through the fake API server, for each latency added to every request
/// (the upgrades included): `kubectl get pod POD` (kubectl's own floor:
/// start, config, one request), the baseline `kubectl exec POD -- true`, whose
/// exec the fake runs with the runtime's CRI `ExecSync` (without the
/// kubelet and streaming-server hops of a real cluster, so if anything
/// faster than there), then `kubectl-ns exec POD -n -- true` cold (empty
/// plugin cache) and warm, through the port-forward to a real agent on
/// 127.0.0.1 whose CRI finds the pod's real container. The four
/// alternate, so drift hits them alike.
fn kubernetes_path(plugin: &std::path::Path, runs: usize, latencies_ms: &[u64]) {
    let lab = Lab::shared();
    let pod = lab
        .run_pod(&PodSpec::httpd("bench-web", 8199))
        .expect("bench pod");
    let api = FakeApi::start();
    let agent = Agent::start_tcp_env(Some(lab.socket.to_str().unwrap()), &api.agent_env("bench-node"));
    api.serve_in_netns(agent.pid());
    api.exec_with(&lab.socket);
    api.add_node("bench-node");
    api.add_pod(running_pod(
        "default",
        "bench-web",
        "bench-node",
        &[("app", &pod.container_id)],
    ));
    api.add_pod(agent_pod("kubectl-ns-agent-b", "bench-node"));
    api.forward("kubectl-ns-system", "kubectl-ns-agent-b", agent.pid());
    let kc = api.kubeconfig_arg();
    let cache = api.cache_dir();
    // kubectl's own cache stays warm, as a user's ~/.kube/cache is.
    let kubectl_cache = tempfile::tempdir().expect("kubectl cache");
    let exec = || {
        let mut c = Command::new(plugin);
        c.args(["exec", "--kubeconfig", &kc, "bench-web", "-n", "--", "true"])
            .env("KUBECACHEDIR", &cache);
        timed(&mut c)
    };
    let kubectl = |args: &[&str]| {
        let mut c = Command::new("kubectl");
        c.args(["--kubeconfig", &kc])
            .args(args)
            .env("KUBECACHEDIR", kubectl_cache.path());
        run_ok(&mut c).as_secs_f64() * 1e3
    };
    let kubectl_exec = ["exec", "bench-web", "--", "true"];
    // What kubectl asks, with an empty cache and then a warm one.
    for cache in ["empty", "warm"] {
        api.take_requests();
        kubectl(&kubectl_exec);
        println!(
            "\nkubectl exec's requests, {cache} kubectl cache: {:?}",
            api.take_requests()
        );
    }
    println!(
        "\nThrough the fake API server, a latency added to every API request; medians of {runs} alternating runs \
         (kubectl exec POD -- true; kubectl-ns exec POD -n -- true with an empty, then a warm cache):\n"
    );
    println!(
        "| latency | kubectl get pod | kubectl exec | kns cold | kns warm | warm/kubectl (goal <= 0.15) | cold/warm (goal <= 1.3) | in-process phases (ms) and round trips |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &ms in latencies_ms {
        api.set_latency(Duration::from_millis(ms));
        let (mut get, mut base, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..runs + 5 {
            let g = kubectl(&["get", "pod", "bench-web"]);
            let b = kubectl(&kubectl_exec);
            let _ = std::fs::remove_dir_all(&cache);
            let c = exec();
            let w = exec();
            if i >= 5 {
                get.push(g);
                base.push(b);
                cold.push(c);
                warm.push(w);
            }
        }
        let (g, b) = (median(get), median(base));
        let (c, cold_phases) = summary(&cold);
        let (w, warm_phases) = summary(&warm);
        let goal = |ok: bool| if ok { "met" } else { "**not met**" };
        println!(
            "| {ms} ms | {g:.2} ms | {b:.2} ms | {c:.2} ms | {w:.2} ms | {:.3}x {} | {:.2}x {} | cold: {cold_phases}<br>warm: {warm_phases} |",
            w / b,
            goal(w / b <= 0.15),
            c / w,
            goal(c / w <= 1.3),
        );
    }
}
