//! Where a session's time goes, for `KNS_TIMINGS=1`: the end of each phase
//! (kubeconfig, API lookups, port-forward, gRPC, exec) is marked, and one
//! line goes to stderr at exit, with the number of API requests (the
//! port-forward upgrade included) and gRPC calls made: on a real cluster
//! each is a round trip. The benchmarks and tests read it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// When timing started, and the end of each phase so far.
struct Marks {
    start: Instant,
    phases: Vec<(&'static str, Instant)>,
}

static MARKS: Mutex<Option<Marks>> = Mutex::new(None);
static API_CALLS: AtomicU32 = AtomicU32::new(0);
static GRPC_CALLS: AtomicU32 = AtomicU32::new(0);

/// Counts one request to the API server.
pub fn api_call() {
    API_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Counts one gRPC call to the agent.
pub fn grpc_call() {
    GRPC_CALLS.fetch_add(1, Ordering::Relaxed);
}

/// Starts timing if `KNS_TIMINGS=1`; call first thing in main.
pub fn init() {
    if std::env::var_os("KNS_TIMINGS").is_some_and(|v| v == "1")
        && let Ok(mut m) = MARKS.lock()
    {
        *m = Some(Marks {
            start: Instant::now(),
            phases: Vec::new(),
        });
    }
}

/// Marks the end of a phase (no-op unless timing).
pub fn mark(phase: &'static str) {
    if let Ok(mut m) = MARKS.lock()
        && let Some(marks) = m.as_mut()
    {
        marks.phases.push((phase, Instant::now()));
    }
}

/// Prints `kns-timings: phase=ms … total=ms api_calls=N grpc_calls=N` to
/// stderr (if timing).
pub fn report() {
    let Ok(m) = MARKS.lock() else { return };
    let Some(marks) = m.as_ref() else { return };
    let mut line = String::from("kns-timings:");
    let mut prev = marks.start;
    for (phase, at) in &marks.phases {
        line.push_str(&format!(
            " {phase}={:.3}",
            at.duration_since(prev).as_secs_f64() * 1e3
        ));
        prev = *at;
    }
    line.push_str(&format!(
        " total={:.3} api_calls={} grpc_calls={}",
        prev.duration_since(marks.start).as_secs_f64() * 1e3,
        API_CALLS.load(Ordering::Relaxed),
        GRPC_CALLS.load(Ordering::Relaxed),
    ));
    eprintln!("{line}");
}
