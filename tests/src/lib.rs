//! Test harness for kubectl-ns: real namespaces, a real containerd on
//! private paths, locally built images, and the project's own binaries.
//!
//! Everything here needs root. Tests call [`require_root`] first and fail,
//! never skip, when it is missing.
#![forbid(unsafe_code)]

pub mod agent;
pub mod agent_pod;
pub mod bins;
pub mod cluster;
pub mod containerd;
pub mod image;
pub mod kubeapi;
pub mod kubelet;
pub mod recordings;
pub mod target;

/// Fails the test loudly when not root: these tests exercise real
/// namespaces and cannot run otherwise.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it creates namespaces and runs containerd); run it as root, e.g. via ./scripts/test"
    );
}

/// Polls `f` every 10 ms until it returns true or `timeout` (times
/// [`time_scale`]) passes.
pub fn wait_until(timeout: std::time::Duration, f: impl FnMut() -> bool) -> bool {
    poll_until(timeout, std::time::Duration::from_millis(10), f)
}

/// How many times longer than on this machine waits may take:
/// `KNS_TEST_TIME_SCALE` (a whole factor, default 1). scripts/vm-test sets
/// it for its emulated VM, where programs start ~30 times slower.
pub fn time_scale() -> u32 {
    static SCALE: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var("KNS_TEST_TIME_SCALE") {
        Err(_) => 1,
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .unwrap_or_else(|| panic!("KNS_TEST_TIME_SCALE={v}: expected a whole factor, 1 or more")),
    })
}

/// Polls `f` every `every` until it returns true or `timeout` (times
/// [`time_scale`]) passes: for checks costly enough that polling them often
/// would slow what they wait for.
pub fn poll_until(
    timeout: std::time::Duration,
    every: std::time::Duration,
    mut f: impl FnMut() -> bool,
) -> bool {
    let timeout = timeout * time_scale();
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(every);
    }
    f()
}

/// Every PID whose namespace of `kind` is the given one (by inode).
pub fn pids_in_ns(kind: &str, inode: u64) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| std::fs::metadata(format!("/proc/{p}/ns/{kind}")).is_ok_and(|m| m.ino() == inode))
                .collect()
        })
        .unwrap_or_default()
}

/// A process's command line, its arguments joined by spaces.
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// PIDs in the network namespace `net_inode` whose command line holds
/// `mark` (a session's tool and what it started, e.g. `sleep MARK`).
pub fn marked(net_inode: u64, mark: &str) -> Vec<i32> {
    pids_in_ns("net", net_inode)
        .into_iter()
        .filter(|p| cmdline(*p).contains(mark))
        .collect()
}

/// Waits until at least `n` processes marked `mark` run in the network
/// namespace `net`; fails with what runs there and `context()` (an agent's
/// log, say) when they never appear.
pub fn wait_marked(net: u64, mark: &str, n: usize, context: impl FnOnce() -> String) {
    // Each poll reads all of /proc: not so often that it slows a script
    // starting a thousand processes on a loaded machine.
    let every = std::time::Duration::from_millis(100);
    let appeared = poll_until(std::time::Duration::from_secs(60), every, || {
        marked(net, mark).len() >= n
    });
    assert!(
        appeared,
        "the session's processes never appeared: {:?}\n{}",
        marked(net, mark),
        context()
    );
}

/// Fails, saying `what` and `context()`, unless every process marked `mark`
/// in the network namespace `net` is gone within 30 s.
pub fn assert_none_marked(net: u64, mark: &str, what: &str, context: impl FnOnce() -> String) {
    let every = std::time::Duration::from_millis(100);
    let gone = poll_until(std::time::Duration::from_secs(30), every, || {
        marked(net, mark).is_empty()
    });
    assert!(gone, "{what}: {:?} still run\n{}", marked(net, mark), context());
}

/// The inode of a process's namespace of `kind`.
pub fn ns_inode(pid: i32, kind: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .unwrap_or_else(|e| panic!("cannot stat /proc/{pid}/ns/{kind}: {e}"))
        .ino()
}

/// Whether a process exists and has not exited (a zombie has).
pub fn running_pid(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

/// Whether a process whose command line is exactly `argv` is running.
pub fn running(argv: &[&str]) -> bool {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        })
        .unwrap_or(false)
}

/// The local addresses (`ADDR:PORT` in hex, as /proc/net/tcp{,6} write
/// them) of the TCP sockets in state LISTEN in `pid`'s network namespace,
/// from the given tables.
fn tcp_listeners(pid: i32, tables: &[&str]) -> Vec<String> {
    tables
        .iter()
        .flat_map(|t| {
            std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() > 3 && f[3] == "0A").then(|| f[1].to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `pid`'s network namespace has a TCP listener on `port`, on any
/// address, IPv4 or IPv6.
pub fn listens(pid: i32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    tcp_listeners(pid, &["tcp", "tcp6"])
        .iter()
        .any(|a| a.ends_with(&want))
}

/// Whether `pid`'s network namespace has a TCP listener on 127.0.0.1:`port`.
pub fn listens_on_loopback(pid: i32, port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    tcp_listeners(pid, &["tcp"]).contains(&want)
}

/// Runs `f` on a thread in `pid`'s network namespace (a pod's, where its
/// loopback listeners are): sockets made there are that namespace's, and
/// the test's other threads stay where they are.
pub fn in_netns<T: Send + 'static>(pid: i32, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
            .unwrap_or_else(|e| panic!("cannot open the network namespace of {pid}: {e}"));
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("cannot enter the network namespace of {pid}: {e}"));
        f()
    })
    .join()
    .expect("the thread in the network namespace")
}

/// `request_line` (`GET /metrics HTTP/1.0`: 1.0, so no chunked answer) to
/// 127.0.0.1:`port` in `pid`'s network namespace: the whole answer, headers
/// included; empty when nothing accepts the connection.
pub fn http_in_netns(pid: i32, port: u16, request_line: &str) -> String {
    use std::io::{Read, Write};
    let request = format!("{request_line}\r\nHost: 127.0.0.1\r\n\r\n");
    in_netns(pid, move || {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return String::new();
        };
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("a read timeout");
        let _ = s.write_all(request.as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The median of benchmark samples (the mean of the middle two for an even
/// count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A bench's `FLAG N` argument, a positive count, else `default`; `cargo
/// bench` also passes `--bench`, which is ignored.
pub fn count_arg(flag: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}
