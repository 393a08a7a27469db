//! What recording a terminal session costs: the same `-t` session's output
//! throughput on two agents side by side, one whose policy records every
//! session and one with no policy, runs alternating so drift hits both.
//! The session is a real terminal (the plugin under script(1)) printing
//! text, as a shell does; the goal is recorded ≥ 0.90× unrecorded.
//!
//! Run as root: `cargo build --release --workspace --bins && cargo bench -p kns-tests --bench record -- --reps 7`.
//! Prints a Markdown table for docs/BENCHMARKS.md.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use kns_tests::agent::Agent;
use kns_tests::recordings::Recordings;
use kns_tests::{bins, count_arg, median, require_root};

/// Bytes the session prints: enough that start-up is a small part.
const SIZE: u64 = 64 << 20;

/// MB/s of a terminal session on `agent` printing SIZE bytes of text, read
/// from script(1)'s side of the terminal.
fn tty_throughput(agent: &Agent) -> f64 {
    let line = format!(
        "{} exec --agent {} node -n -t -- sh -c 'yes \"the quick brown fox jumps over the lazy dog 0123456789\" | head -c {SIZE}'",
        bins::plugin().display(),
        agent.addr()
    );
    let start = Instant::now();
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script(1)");
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while let Ok(n) = out.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(child.wait().unwrap().success());
    // The terminal turns each \n into \r\n: at least SIZE bytes came.
    assert!(total >= SIZE, "only {total} bytes");
    SIZE as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    require_root();
    let rec = Recordings::new(
        "recording:\n  record: all\n  maxSessionBytes: 1073741824\n  maxTotalBytes: 4294967296\n",
    );
    let recorded = Agent::start_with_env(None, &rec.env());
    let plain = Agent::start(None);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    tty_throughput(&plain);
    tty_throughput(&recorded);
    let reps = count_arg("--reps", 7);
    for _ in 0..reps {
        a.push(tty_throughput(&plain));
        b.push(tty_throughput(&recorded));
    }
    let recorded_bytes: u64 = rec.files().iter().map(|f| f.metadata().unwrap().len()).sum();
    assert!(
        recorded_bytes > SIZE,
        "the recorded agent recorded only {recorded_bytes} bytes"
    );
    let (ma, mb) = (median(a), median(b));
    println!(
        "| `-t` session printing {} MiB of text | MB/s (median of {}) |",
        SIZE >> 20,
        reps
    );
    println!("|---|---|");
    println!("| unrecorded | {ma:.1} |");
    println!("| recorded (`record: all`) | {mb:.1} |");
    println!(
        "| ratio recorded / unrecorded | **{:.2}** (goal ≥ 0.90) |",
        mb / ma
    );
}
