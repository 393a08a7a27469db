//! kubectl-ns benchmarks, each side by side with a baseline measured in the
//! same run (these machines are noisy; only medians and ratios mean much).
//!
//! Run as root: `cargo build --release --workspace --bins && cargo bench -p kns-tests --bench exec`
//! (or `./scripts/bench`). Prints a Markdown table for docs/BENCHMARKS.md.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kns_tests::agent::Agent;
use kns_tests::bins;
use kns_tests::kubeapi::{FakeApi, agent_pod};
use kns_tests::target::NsProcess;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

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

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    kns_tests::require_root();
    let target = NsProcess::spawn(&["--net"], "exec sleep 100000");
    let agent = Agent::start(None);
    let addr = agent.addr();
    let pid = target.pid.to_string();
    let tpid = format!("pid/{pid}");
    let plugin = bins::plugin();
    let runs = 200;
    println!("| what | kubectl-ns | baseline | ratio |");
    println!("|---|---|---|---|");

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

    let (k, n) = latency(runs, &mut kns(&["true"]), &mut nsenter(&["true"]));
    println!(
        "| exec -n -- true, whole process, median of {runs} | {k:.2} ms | nsenter -t PID -n true: {n:.2} ms | {:.2}x |",
        k / n
    );

    let gib = "1073741824";
    let reps = 5;
    let mut tk = Vec::new();
    let mut tn = Vec::new();
    for _ in 0..reps {
        tk.push(throughput(&mut kns(&["head", "-c", gib, "/dev/zero"])));
        tn.push(throughput(&mut nsenter(&["head", "-c", gib, "/dev/zero"])));
    }
    let (k, n) = (median(tk) / 1e9, median(tn) / 1e9);
    println!(
        "| stdout throughput, 1 GiB, unix socket, median of {reps} | {k:.2} GB/s | nsenter into a pipe: {n:.2} GB/s | {:.2}x |",
        k / n
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
    // Wait until all 50 tools run (each session's sleep is a child of the agent).
    let all_up = kns_tests::wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", agent.pid()))
            .map(|c| c.split_whitespace().count() >= 50)
            .unwrap_or(false)
    });
    assert!(all_up, "50 sessions did not start");
    let busy = rss_kib(agent.pid());
    for s in &mut sessions {
        let _ = s.kill();
        let _ = s.wait();
    }
    println!(
        "| agent RSS idle / with 50 sessions | {:.1} MiB / {:.1} MiB | - | - |",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0
    );

    kubernetes_path(&plugin, runs / 2);
}

/// `exec node/NODE -n -- true` through the fake API server (pods list,
/// node get, port-forward WebSocket) to a real agent on 127.0.0.1, with the
/// plugin's own phase timings (`KNS_TIMINGS=1`).
fn kubernetes_path(plugin: &std::path::Path, runs: usize) {
    let agent = Agent::start_tcp(None);
    let api = FakeApi::start();
    api.add_node("bench-node");
    api.add_pod(agent_pod("kubectl-ns-agent-b", "bench-node"));
    api.forward("kubectl-ns-system", "kubectl-ns-agent-b", agent.pid());
    let kc = api.kubeconfig_arg();
    let mut phases: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut wall = Vec::new();
    for i in 0..runs + 10 {
        let start = Instant::now();
        let o = Command::new(plugin)
            .args(["exec", "--kubeconfig", &kc, "node/bench-node", "-n", "--", "true"])
            .env("KNS_TIMINGS", "1")
            .stdin(Stdio::null())
            .output()
            .expect("spawn");
        let d = start.elapsed().as_secs_f64() * 1e3;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        if i < 10 {
            continue;
        }
        wall.push(d);
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err
            .lines()
            .find(|l| l.starts_with("kns-timings:"))
            .expect("timings line");
        for kv in line.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=').unwrap();
            phases.entry(k.to_owned()).or_default().push(v.parse().unwrap());
        }
    }
    println!(
        "| exec node/NODE -n -- true via fake API server + port-forward, whole process, median of {runs} | {:.2} ms | - | - |",
        median(wall)
    );
    let order = ["config", "lookup", "portforward", "grpc", "exec", "total"];
    let parts: Vec<String> = order
        .iter()
        .filter_map(|k| phases.remove(*k).map(|v| format!("{k} {:.2}", median(v))))
        .collect();
    println!(
        "| … of which, medians in ms (in-process time; the rest is process start and exit) | {} | - | - |",
        parts.join(", ")
    );
}
