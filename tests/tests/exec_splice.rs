//! Stdout spliced into the client's own pipe (a local agent on its unix
//! socket, no terminal, no recording): every byte, in order, counted, and
//! the exit status after them; anything else keeps the replies.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use kns_tests::agent::Agent;
use kns_tests::bins::{self, exec_command};
use kns_tests::{poll_until, require_root};
use sha2::{Digest, Sha256};

/// 48 MiB that repeat nowhere (an xorshift stream), in a file the tool
/// reads back: what arrives is compared byte for byte, not just counted.
fn varied_file(dir: &std::path::Path) -> (std::path::PathBuf, usize, Vec<u8>) {
    let len = 48 << 20;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    let path = dir.join("varied");
    std::fs::File::create(&path).unwrap().write_all(&data).unwrap();
    (path, len, Sha256::digest(&data).to_vec())
}

/// The inodes of the pipes the agent holds open.
fn agent_pipes(agent: &Agent) -> Vec<u64> {
    std::fs::read_dir(format!("/proc/{}/fd", agent.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("pipe:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

fn cat_then_exit(agent: &Agent, file: &std::path::Path, stdout: Stdio) -> Child {
    let script = format!("cat {}; sleep 1; exit 7", file.display());
    exec_command(&agent.addr(), "node", &["-n"], &["sh", "-c", &script])
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `out` to its end while the client runs; its output and status.
fn collect(child: Child, mut out: impl Read + Send + 'static) -> (Vec<u8>, std::process::Output) {
    let reading = std::thread::spawn(move || {
        let mut got = Vec::new();
        out.read_to_end(&mut got).map(|_| got)
    });
    let o = child.wait_with_output().unwrap();
    (reading.join().unwrap().unwrap(), o)
}

fn end_line(agent: &Agent) -> serde_json::Value {
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            agent.audit().iter().any(|r| r["event"] == "end")
        }),
        "no end line: {}",
        agent.logs()
    );
    agent.audit().into_iter().find(|r| r["event"] == "end").unwrap()
}

#[test]
fn a_piped_stdout_gets_every_byte_spliced_then_the_status() {
    require_root();
    let agent = Agent::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (file, len, sum) = varied_file(dir.path());
    let (r, w) = std::io::pipe().unwrap();
    let ours = std::fs::metadata(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        r.as_fd().as_raw_fd()
    }))
    .unwrap()
    .ino();
    let child = cat_then_exit(&agent, &file, Stdio::from(OwnedFd::from(w)));
    // While the session runs, the agent holds this very pipe: the output
    // does not come through the client.
    assert!(
        poll_until(Duration::from_secs(10), Duration::from_millis(20), || {
            agent_pipes(&agent).contains(&ours)
        }),
        "the agent never held the client's pipe: {}",
        agent.logs()
    );
    let (got, o) = collect(child, r);
    assert_eq!(got.len(), len, "{}", bins::stderr(&o));
    assert_eq!(Sha256::digest(&got).to_vec(), sum, "the bytes differ");
    assert_eq!(o.status.code(), Some(7), "{}", bins::stderr(&o));
    let end = end_line(&agent);
    assert_eq!(end["bytes_out"], len as u64, "{end}");
    // Not kept past the session.
    assert!(
        poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
            !agent_pipes(&agent).contains(&ours)
        }),
        "the agent kept the client's pipe"
    );
}

#[test]
fn a_socket_stdout_gets_the_output_as_replies() {
    require_root();
    let agent = Agent::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (file, len, sum) = varied_file(dir.path());
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = cat_then_exit(&agent, &file, Stdio::from(OwnedFd::from(theirs)));
    let (got, o) = collect(child, ours);
    assert_eq!(got.len(), len, "{}", bins::stderr(&o));
    assert_eq!(Sha256::digest(&got).to_vec(), sum, "the bytes differ");
    assert_eq!(o.status.code(), Some(7), "{}", bins::stderr(&o));
    assert_eq!(end_line(&agent)["bytes_out"], len as u64);
}

#[test]
fn a_reader_that_leaves_ends_a_spliced_session_as_a_broken_pipe() {
    require_root();
    let agent = Agent::start(None);
    let (mut r, w) = std::io::pipe().unwrap();
    let child = exec_command(
        &agent.addr(),
        "node",
        &["-n"],
        &["head", "-c", "1073741824", "/dev/zero"],
    )
    .stdout(Stdio::from(OwnedFd::from(w)))
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = [0u8; 4096];
    r.read_exact(&mut first).unwrap();
    drop(r);
    let o = child.wait_with_output().unwrap();
    // As with the replies: a reader that stops early is no error.
    assert_eq!(o.status.code(), Some(0), "{}", bins::stderr(&o));
    let end = end_line(&agent);
    assert!(end["bytes_out"].as_u64().unwrap() < 1 << 30, "{end}");
}
