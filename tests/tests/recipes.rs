//! The README's recipes, each run against a real agent and real
//! namespaces: the same tool and flags, with `pid/PID` and `node` targets
//! standing in for pods and nodes.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{self, exec, stderr, stdout};
use kns_tests::target::NsProcess;
use kns_tests::{require_root, wait_until};

#[test]
fn tcpdump_streams_a_pcap_byte_for_byte() {
    require_root();
    let t = NsProcess::spawn(&["--net"], "ip link set lo up && exec sleep 1000");
    let agent = Agent::start(None);
    let copy = tempfile::NamedTempFile::new().unwrap();
    // tee keeps, on the node, exactly what tcpdump wrote.
    let capture = format!(
        "tcpdump -U -w - -i lo -c 6 icmp 2>/dev/null | tee {}",
        copy.path().display()
    );
    let mut child = bins::exec_command(&agent.addr(), &t.target(), &["-n"], &["sh", "-c", &capture])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).map(|_| v)
    });
    // Pings until tcpdump has its six packets (requests and replies).
    let done = wait_until(Duration::from_secs(20), || {
        let _ = Command::new("nsenter")
            .args([
                "-t",
                &t.pid.to_string(),
                "-n",
                "busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "127.0.0.1",
            ])
            .output();
        child.try_wait().ok().flatten().is_some()
    });
    if !done {
        let _ = child.kill();
    }
    assert!(done, "tcpdump did not capture six packets");
    let got = reader.join().unwrap().unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let wrote = std::fs::read(copy.path()).unwrap();
    assert!(
        got.len() > 24 && got == wrote,
        "{} bytes arrived, tcpdump wrote {}",
        got.len(),
        wrote.len()
    );
    // A pcap (little-endian magic) that tcpdump itself reads back.
    assert_eq!(&got[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
    let r = Command::new("tcpdump")
        .args(["-nr"])
        .arg(copy.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&r.stdout).lines().count(),
        6,
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
}

#[test]
fn strace_attaches_to_the_pods_pid_1() {
    require_root();
    let t = NsProcess::spawn(&["--pid", "--mount-proc"], "exec sleep 1000");
    let agent = Agent::start(None);
    let o = exec(
        &agent.addr(),
        &t.target(),
        &["-p"],
        &["timeout", "-s", "INT", "5", "strace", "-p", "1"],
    );
    assert!(stderr(&o).contains("Process 1 attached"), "{}", stderr(&o));
}

#[test]
fn open_files_and_sockets_with_their_process() {
    require_root();
    let t = NsProcess::spawn(
        &["--net", "--pid", "--mount-proc"],
        "ip link set lo up && exec busybox httpd -f -p 127.0.0.1:8099",
    );
    let agent = Agent::start(None);
    t.wait_ready("httpd listens", || {
        stdout(&exec(&agent.addr(), &t.target(), &["-n"], &["ss", "-ltn"])).contains(":8099")
    });
    let fds = exec(&agent.addr(), &t.target(), &["-p"], &["ls", "-l", "/proc/1/fd"]);
    assert!(
        stdout(&fds).contains("socket:["),
        "{}{}",
        stdout(&fds),
        stderr(&fds)
    );
    let ss = exec(&agent.addr(), &t.target(), &["-n", "-p"], &["ss", "-tanp"]);
    assert!(
        stdout(&ss).contains("127.0.0.1:8099") && stdout(&ss).contains("pid=1,"),
        "{}{}",
        stdout(&ss),
        stderr(&ss)
    );
}

#[test]
fn which_process_holds_a_node_port_and_its_cgroup() {
    require_root();
    let mut httpd = Command::new("busybox")
        .args(["httpd", "-f", "-p", "127.0.0.1:8098"])
        .spawn()
        .unwrap();
    let agent = Agent::start(None);
    let pid = httpd.id().to_string();
    let mut out = String::new();
    let found = wait_until(Duration::from_secs(10), || {
        out = stdout(&exec(
            &agent.addr(),
            "node",
            &["-n"],
            &["ss", "-ltnp", "sport = :8098"],
        ));
        out.contains(&format!("pid={pid},"))
    });
    let cgroup = exec(
        &agent.addr(),
        "node",
        &["-n"],
        &["cat", &format!("/proc/{pid}/cgroup")],
    );
    let _ = httpd.kill();
    let _ = httpd.wait();
    assert!(found, "{out}");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    assert_eq!(stdout(&cgroup), own, "{}", stderr(&cgroup));
}

#[test]
fn two_targets_compared_show_what_they_share() {
    require_root();
    let a = NsProcess::spawn(&["--net", "--uts"], "exec sleep 1000");
    // The second joins the first's network namespace, with a UTS of its own.
    let b = NsProcess::spawn(&["--uts"], &format!("exec nsenter -t {} -n sleep 1000", a.pid));
    let agent = Agent::start(None);
    let ls = |t: &NsProcess| {
        let o = Command::new(bins::plugin())
            .args(["ls", "--agent", &agent.addr(), &t.target(), "-o", "wide"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let row = |out: &str, ns: &str| {
        out.lines()
            .find(|l| l.starts_with(ns))
            .unwrap_or_default()
            .to_owned()
    };
    let (la, lb) = (ls(&a), wait_until_joined(&b, &a, || ls(&b)));
    assert_eq!(row(&la, "net "), row(&lb, "net "), "{la}\n{lb}");
    assert_ne!(row(&la, "uts "), row(&lb, "uts "), "{la}\n{lb}");
}

#[test]
fn wide_for_one_target_adds_what_the_table_leaves_out() {
    require_root();
    let t = NsProcess::spawn(&["--net"], "exec sleep 1000");
    let agent = Agent::start(None);
    let ls = |output: &str| {
        let o = bins::kns(&["ls", "--agent", &agent.addr(), &t.target(), "-o", output]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let (table, wide) = (ls("table"), ls("wide"));
    // Every line of the table is in the wide form, which says more.
    for l in table.lines().filter(|l| !l.is_empty() && !l.starts_with("NS ")) {
        assert!(wide.lines().any(|w| w.starts_with(l)), "{l:?} not in:\n{wide}");
    }
    assert!(
        wide.contains(&format!("node reference PID {}", std::process::id())),
        "{wide}"
    );
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(format!("/proc/{}/ns/net", t.pid))
        .unwrap()
        .dev();
    let net = wide.lines().find(|l| l.starts_with("net ")).unwrap_or_default();
    assert!(
        net.contains(&format!(
            "{}:{}",
            nix::sys::stat::major(dev),
            nix::sys::stat::minor(dev)
        )),
        "{wide}"
    );
    // As the agent sees it from its own cgroup namespace: one line per
    // hierarchy, paths relative to the agent's cgroup.
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", t.pid)).unwrap();
    for l in cgroup.lines() {
        let hierarchy = &l[..=l.rfind(':').unwrap()];
        assert!(
            wide.contains(&format!("\n  {hierarchy}")),
            "{l:?} not in:\n{wide}"
        );
    }
    assert!(wide.contains("\ntimens_offsets:\n"), "{wide}");
}

/// `f()` once `b` has joined `a`'s network namespace (nsenter has run).
fn wait_until_joined(b: &NsProcess, a: &NsProcess, f: impl Fn() -> String) -> String {
    let net = |p: i32| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    assert!(wait_until(Duration::from_secs(10), || net(b.pid) == net(a.pid)));
    f()
}
