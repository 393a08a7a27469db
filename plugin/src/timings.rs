//! Where a session's time goes, for `KNS_TIMINGS=1`: the end of each phase
//! (kubeconfig, API lookups, port-forward, gRPC, exec) is marked, and one
//! line goes to stderr at exit. The benchmarks read it.

use std::sync::Mutex;
use std::time::Instant;

/// When timing started, and the end of each phase so far.
struct Marks {
    start: Instant,
    phases: Vec<(&'static str, Instant)>,
}

static MARKS: Mutex<Option<Marks>> = Mutex::new(None);

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

/// Prints `kns-timings: phase=ms … total=ms` to stderr (if timing).
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
        " total={:.3}",
        prev.duration_since(marks.start).as_secs_f64() * 1e3
    ));
    eprintln!("{line}");
}
