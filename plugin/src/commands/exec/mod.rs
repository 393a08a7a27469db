//! `kubectl ns exec`: run a node tool inside a target's namespaces.
pub mod many;
pub mod terminal;

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{
    ExecRequest, ExecStart, Exited, Namespace, Started, StdinClose, ToolSource, WindowSize, exited,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::agent::route;
use crate::agent::transport;
use crate::cli::target::Target;
use crate::cli::{ExecArgs, NsFlags, Tools};
use crate::error::{self, Failure};
use crate::kube::resolve::KubeTarget;
use terminal::RawMode;

/// Largest message accepted from the agent (its chunks are 256 KiB).
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

impl NsFlags {
    /// The namespaces chosen, or a usage error when none is.
    pub fn namespaces(&self) -> Result<Vec<Namespace>, Failure> {
        let all = self.all;
        let chosen: Vec<Namespace> = [
            (self.net, Namespace::Net),
            (self.pid, Namespace::Pid),
            (self.mount, Namespace::Mnt),
            (self.uts, Namespace::Uts),
            (self.ipc, Namespace::Ipc),
            (self.user, Namespace::User),
            (self.cgroup, Namespace::Cgroup),
            (self.time, Namespace::Time),
        ]
        .into_iter()
        .filter(|(on, _)| all || *on)
        .map(|(_, n)| n)
        .collect();
        if chosen.is_empty() {
            return Err(Failure::new(
                error::USAGE,
                "no namespace chosen: pick at least one of -n (net), -p (pid), -m (mount), -u (uts), \
                 -i (ipc), -U (user), -C (cgroup), -T (time), or -a (all)",
            ));
        }
        Ok(chosen)
    }
}

/// The validated start message (the target is filled in once resolved).
pub(crate) fn start_message(args: &ExecArgs, tty: bool) -> Result<ExecStart, Failure> {
    // clap's `requires` does not hold these to -l here: said by hand.
    if args.selector.is_none()
        && let Some(flag) = [(args.output.is_some(), "-o"), (args.all_namespaces, "-A")]
            .into_iter()
            .find_map(|(given, flag)| given.then_some(flag))
    {
        return Err(Failure::new(
            error::USAGE,
            format!("{flag} goes with -l SELECTOR (many pods at once); one target prints its own output"),
        ));
    }
    if let Some(c) = &args.container
        && args
            .target
            .as_ref()
            .is_some_and(|t| !matches!(t, Target::Kube(KubeTarget::Pod { .. })))
    {
        return Err(Failure::new(
            error::USAGE,
            format!(
                "-c {c} names a container of a pod, and the target is not a pod (container/ID is one container already)"
            ),
        ));
    }
    if let Some(t) = &args.target {
        crate::agent::route::namespace_applies(&args.kube, t)?;
    }
    let agent_tools = args.tools == Tools::Agent;
    if agent_tools && args.ns.user {
        return Err(Failure::new(
            error::USAGE,
            "--tools agent and -U exclude each other: in the target's user namespace the tool could be traced by \
             the target's processes, which would reach the agent's filesystem (its ServiceAccount token) \
             through it.\nHint: drop -U; the agent's tool runs as node root in the other namespaces you chose",
        ));
    }
    if agent_tools && args.ns.mount {
        return Err(Failure::new(
            error::USAGE,
            "--tools agent and -m exclude each other: -m makes the tool the container image's own binary (run \
             as the container), --tools agent runs the agent image's as node root in the agent's mount \
             namespace.\nHint: drop -m to run the agent's tool in the other namespaces you chose, or drop \
             --tools agent to run the image's binary",
        ));
    }
    if args.privileged && !(args.ns.mount || args.ns.all) || args.privileged && agent_tools {
        return Err(Failure::new(
            error::USAGE,
            "--privileged only changes -m (or -a without --tools agent): without the mount namespace the tool \
             is the node's or the agent's own binary and runs as node root already",
        ));
    }
    let mut env = HashMap::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_owned(), v.to_owned());
            }
            _ => {
                return Err(Failure::new(error::USAGE, format!("-e {kv}: expected KEY=VALUE")));
            }
        }
    }
    if tty && let Ok(term) = std::env::var("TERM") {
        env.entry("TERM".into()).or_insert(term);
    }
    // -a with the agent's tools: every kind but the mount namespace, which
    // is where those tools come from, and the user namespace (see above).
    let namespaces = args
        .ns
        .namespaces()?
        .into_iter()
        .filter(|n| !(agent_tools && matches!(n, Namespace::Mnt | Namespace::User)))
        .map(|n| n as i32)
        .collect();
    Ok(ExecStart {
        target: None,
        namespaces,
        argv: args.command.clone(),
        env,
        workdir: args.workdir.clone().unwrap_or_default(),
        tty,
        // -t implies stdin, also when it falls back to pipes because stdin
        // is not a terminal (`echo x | kubectl ns exec -t … -- cat`).
        stdin: args.stdin || args.tty,
        no_mount_proc: args.no_mount_proc,
        all: args.ns.all,
        privileged: args.privileged,
        tools: match args.tools {
            Tools::Node => ToolSource::Node,
            Tools::Agent => ToolSource::Agent,
        } as i32,
        window: if tty {
            terminal::size().map(|(rows, cols)| WindowSize { rows, cols })
        } else {
            None
        },
    })
}

/// Checks that the agent ran the tool from the source asked for: an agent
/// older than `--tools` ignores the field and runs the node's tool, which
/// must not pass for the agent's (the session is then dropped, which kills
/// the tool, before any of its output is shown).
pub(crate) fn check_started(tools_asked: i32, started: &Started) -> Result<(), Failure> {
    if tools_asked != started.tools {
        return Err(Failure::own(
            "the agent on this node is older than --tools agent and ran nothing from its image (the session \
             was ended)\nHint: upgrade the agents: kubectl ns install --image … with this kubectl-ns's version",
        ));
    }
    Ok(())
}

/// Reads stdin on a plain thread (a blocking read cannot be cancelled, and
/// the process exits without waiting for it) and forwards it.
fn forward_stdin(tx: mpsc::Sender<ExecRequest>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = ExecRequest {
                        msg: Some(In::Stdin(Bytes::copy_from_slice(&buf[..n]))),
                    };
                    if tx.blocking_send(msg).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = tx.blocking_send(ExecRequest {
            msg: Some(In::StdinClose(StdinClose {})),
        });
    });
}

/// Output chunks between the runtime and the writer thread: enough to keep
/// the terminal busy, bounded so a slow reader slows the agent down.
const OUTPUT_QUEUE: usize = 8;

/// A second SIGINT/SIGTERM this soon after one the agent has not answered
/// ends kubectl-ns locally.
const SECOND_SIGNAL: Duration = Duration::from_secs(1);

enum Chunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// How the writer thread ended.
enum WriterEnd {
    /// Every chunk was written and the channel closed.
    Drained,
    /// The local reader went away (`| head`): not an error.
    Closed,
    Failed(String),
}

/// Writes the command's output on a thread of its own: a blocking write to a
/// slow terminal or a stopped reader must not stall the single-threaded
/// runtime, which also drives the HTTP/2 connection and signal forwarding.
/// The bounded channel carries backpressure to the agent through the
/// HTTP/2 flow control; one writer keeps stdout and stderr in order.
fn spawn_writer() -> Result<(mpsc::Sender<Chunk>, oneshot::Receiver<WriterEnd>), Failure> {
    // Plain files over dups of fds 1 and 2: std's stdout is line-buffered
    // and scans every chunk for newlines, which binary output pays for.
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| Failure::own(format!("cannot use stdout/stderr: {e}")))
    };
    let mut stdout = dup(std::io::stdout().as_fd())?;
    let mut stderr = dup(std::io::stderr().as_fd())?;
    let (tx, mut rx) = mpsc::channel(OUTPUT_QUEUE);
    let (end_tx, end_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("output".into())
        .spawn(move || {
            let end = loop {
                let written = match rx.blocking_recv() {
                    None => break WriterEnd::Drained,
                    Some(Chunk::Stdout(b)) => stdout.write_all(&b),
                    Some(Chunk::Stderr(b)) => stderr.write_all(&b),
                };
                match written {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break WriterEnd::Closed,
                    Err(e) => break WriterEnd::Failed(format!("cannot write the command's output: {e}")),
                }
            };
            let _ = end_tx.send(end);
        })
        .map_err(|e| Failure::own(format!("cannot start the output thread: {e}")))?;
    Ok((tx, end_rx))
}

/// Queues a message for the agent without waiting: the session loop must
/// stay free to handle the next signal while the request stream is full.
fn post(tx: &mpsc::Sender<ExecRequest>, msg: In) {
    if let Err(TrySendError::Full(req)) = tx.try_send(ExecRequest { msg: Some(msg) }) {
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(req).await;
        });
    }
}

fn sig(kind: SignalKind) -> Result<Signal, Failure> {
    signal(kind).map_err(|e| Failure::own(format!("cannot handle signals: {e}")))
}

/// The signals kubectl-ns handles itself from the start of `exec` and
/// passes on to the command.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    fn install() -> Result<Signals, Failure> {
        Ok(Signals {
            int: sig(SignalKind::interrupt())?,
            term: sig(SignalKind::terminate())?,
            hup: sig(SignalKind::hangup())?,
            quit: sig(SignalKind::quit())?,
        })
    }

    /// The next signal.
    async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
        }
    }
}

/// How the reading of the agent's replies ended.
enum Pumped {
    Exited(Exited),
    /// The writer thread stopped; its own end says why.
    WriterGone,
    Failed(Failure),
}

/// The exit code for ending on signal `n` without the remote status.
fn local_signal_exit(n: i32) -> u8 {
    error::from_remote(None, Some(n))
}

pub async fn run(args: ExecArgs) -> Result<u8, Failure> {
    if args.selector.is_some() {
        return many::run(args).await;
    }
    let tty = args.tty && std::io::stdin().is_terminal();
    if args.tty && !tty {
        eprintln!("warning: stdin is not a terminal; running without a TTY (-t ignored, stdin still passed)");
    }
    let mut start = start_message(&args, tty)?;
    let tools_asked = start.tools;
    let stdin_on = start.stdin;
    // Handled from here on: until the session is open there is nothing to
    // forward a signal to, so one ends kubectl-ns at once; dropping the
    // connection makes the agent kill anything it started.
    let mut signals = Signals::install()?;
    let (req_tx, req_rx) = mpsc::channel(16);
    let reaching = std::cell::Cell::new(true);
    let open = async {
        let target = args
            .target
            .as_ref()
            .ok_or_else(|| Failure::own("internal error: no target"))?;
        let reached = route::reach(&args.kube, target, args.container.as_deref()).await?;
        reaching.set(false);
        start.target = Some(reached.target);
        let mut client = AgentClient::new(reached.channel).max_decoding_message_size(MAX_MESSAGE);
        req_tx
            .send(ExecRequest {
                msg: Some(In::Start(start)),
            })
            .await
            .map_err(|_| Failure::own("internal error: request stream closed"))?;
        crate::timings::grpc_call();
        client
            .exec(ReceiverStream::new(req_rx))
            .await
            .map_err(|s| error::status_failure(&s))
    };
    let response = tokio::select! {
        r = tokio::time::timeout(error::ANSWER_TIMEOUT, open) => r.unwrap_or_else(|_| Err(error::silent(reaching.get())))?,
        n = signals.next() => return Ok(local_signal_exit(n)),
    };
    crate::timings::mark("grpc");
    transport::warn_version_skew(response.metadata());
    let mut replies = response.into_inner();

    let raw = if tty { RawMode::enable() } else { None };
    if stdin_on {
        forward_stdin(req_tx.clone());
    }
    let mut winch = sig(SignalKind::window_change())?;
    let (out_tx, mut writer_end) = spawn_writer()?;
    // A raw terminal does not turn \n into \r\n.
    let eol = if raw.is_some() { "\r\n" } else { "\n" };
    let direct = args.kube.agent.is_some();
    let last_reply = Cell::new(Instant::now());
    let replied = &last_reply;
    // Owns `out_tx`, so the writer sees the channel close when this ends.
    let pump = async move {
        loop {
            let r = match replies.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Pumped::Failed(Failure::own(
                        "the agent ended the session without an exit status",
                    ));
                }
                // A status with a source is the transport's own, not one
                // the agent sent.
                Err(s) if std::error::Error::source(&s).is_some() => {
                    return Pumped::Failed(error::broken_session(&s, direct));
                }
                Err(s) => return Pumped::Failed(error::status_failure(&s)),
            };
            replied.set(Instant::now());
            let chunk = match r.msg {
                Some(Out::Stdout(b)) => Chunk::Stdout(b),
                Some(Out::Stderr(b)) => Chunk::Stderr(b),
                // Returning drops `out_tx`: the writer drains and ends.
                Some(Out::Exited(e)) => return Pumped::Exited(e),
                Some(Out::Started(s)) => {
                    if let Err(f) = check_started(tools_asked, &s) {
                        return Pumped::Failed(f);
                    }
                    if s.notices.is_empty() {
                        continue;
                    }
                    // Notes go through the writer, so they keep their place
                    // before the command's own output.
                    let notes: String = s
                        .notices
                        .iter()
                        .map(|n| format!("kubectl-ns: note: {n}{eol}"))
                        .collect();
                    Chunk::Stderr(Bytes::from(notes))
                }
                None => continue,
            };
            if out_tx.send(chunk).await.is_err() {
                return Pumped::WriterGone;
            }
        }
    };
    tokio::pin!(pump);
    let mut pumped = false;
    let mut outcome: Option<Result<Exited, Failure>> = None;
    let mut forwarded_at: Option<Instant> = None;
    loop {
        tokio::select! {
            p = &mut pump, if !pumped => {
                pumped = true;
                outcome = match p {
                    Pumped::Exited(e) => Some(Ok(e)),
                    Pumped::Failed(f) => Some(Err(f)),
                    Pumped::WriterGone => None,
                };
            }
            end = &mut writer_end => match end {
                Ok(WriterEnd::Closed) => return Ok(0),
                Ok(WriterEnd::Failed(msg)) => return Err(Failure::own(msg)),
                // Drained: every byte is out, so the exit status or the
                // error comes last.
                Ok(WriterEnd::Drained) | Err(_) => {
                    let e = match outcome {
                        Some(o) => o?,
                        None => return Err(Failure::own("internal error: the output ended before the session")),
                    };
                    drop(raw);
                    for m in [&e.error, &e.note].into_iter().filter(|m| !m.is_empty()) {
                        eprintln!("kubectl-ns: {m}");
                    }
                    crate::timings::mark("exec");
                    let (code, signal) = match e.status {
                        Some(exited::Status::Code(c)) => (Some(c), None),
                        Some(exited::Status::Signal(s)) => (None, Some(s)),
                        None => (None, None),
                    };
                    return Ok(error::from_remote(code, signal));
                }
            },
            n = signals.next() => {
                let interrupt = n == libc::SIGINT || n == libc::SIGTERM;
                // The user asked twice and the agent (or the port-forward
                // in between) has not answered since: stop waiting.
                if interrupt
                    && let Some(at) = forwarded_at
                    && at.elapsed() <= SECOND_SIGNAL
                    && last_reply.get() < at
                {
                    drop(raw);
                    eprintln!("kubectl-ns: the agent did not answer the signal; ending without the remote status");
                    return Ok(local_signal_exit(n));
                }
                if interrupt {
                    forwarded_at = Some(Instant::now());
                }
                post(&req_tx, In::Signal(n));
            }
            _ = winch.recv(), if tty => {
                if let Some((rows, cols)) = terminal::size() {
                    post(&req_tx, In::Resize(WindowSize { rows, cols }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_means_every_namespace() {
        let f = NsFlags {
            all: true,
            ..Default::default()
        };
        assert_eq!(f.namespaces().unwrap().len(), 8);
        let f = NsFlags {
            net: true,
            uts: true,
            ..Default::default()
        };
        assert_eq!(f.namespaces().unwrap(), vec![Namespace::Net, Namespace::Uts]);
        let e = NsFlags::default().namespaces().unwrap_err();
        assert_eq!(e.code, error::USAGE);
        assert!(e.message.contains("no namespace chosen"));
    }

    fn start(flags: &[&str]) -> Result<ExecStart, Failure> {
        use clap::Parser;
        let argv = ["kubectl-ns", "exec", "--agent", "unix:///x", "node"]
            .iter()
            .chain(flags)
            .chain(&["--", "ss"]);
        let crate::cli::Command::Exec(a) = crate::cli::Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        start_message(&a, false)
    }

    #[test]
    fn the_agents_tools_exclude_the_mount_namespace() {
        let s = start(&["-n", "--tools", "agent"]).unwrap();
        assert_eq!(s.tools, ToolSource::Agent as i32);
        assert_eq!(start(&["-n"]).unwrap().tools, ToolSource::Node as i32);
        // -a: every kind but the one the tools come from, and the user
        // namespace.
        let s = start(&["-a", "--tools", "agent"]).unwrap();
        assert_eq!(s.namespaces.len(), 6);
        assert!(!s.namespaces.contains(&(Namespace::Mnt as i32)) && s.all);
        assert!(!s.namespaces.contains(&(Namespace::User as i32)));
        for flags in [
            &["-m", "--tools", "agent"][..],
            &["-n", "-U", "--tools", "agent"],
            &["-n", "-m", "--tools", "agent"],
            &["-a", "--privileged", "--tools", "agent"],
        ] {
            let e = start(flags).unwrap_err();
            assert_eq!(e.code, error::USAGE, "{flags:?}");
            assert!(e.message.contains("--tools agent"), "{flags:?}: {}", e.message);
        }
    }

    #[test]
    fn a_session_from_another_source_than_asked_is_refused() {
        let started = |tools: ToolSource| Started {
            tools: tools as i32,
            ..Default::default()
        };
        assert!(check_started(ToolSource::Agent as i32, &started(ToolSource::Agent)).is_ok());
        let e = check_started(ToolSource::Agent as i32, &started(ToolSource::Node)).unwrap_err();
        assert!(e.message.contains("older than --tools agent"), "{}", e.message);
    }
}
