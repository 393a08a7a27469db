//! `kubectl ns exec`: run a node tool inside a target's namespaces.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;

use bytes::Bytes;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecStart, Namespace, StdinClose, WindowSize, exited};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{ExecArgs, NsFlags};
use crate::cluster;
use crate::exit::{self, Failure};
use crate::terminal::{self, RawMode};
use crate::transport;

/// Largest message accepted from the agent (its chunks are 256 KiB).
const MAX_MESSAGE: usize = 16 << 20;

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
                exit::USAGE,
                "no namespace chosen: pick at least one of -n (net), -p (pid), -m (mount), -u (uts), \
                 -i (ipc), -U (user), -C (cgroup), -T (time), or -a (all)",
            ));
        }
        Ok(chosen)
    }
}

/// The validated start message (the target is filled in once resolved).
fn start_message(args: &ExecArgs, tty: bool) -> Result<ExecStart, Failure> {
    let mut env = HashMap::new();
    for kv in &args.env {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.to_owned(), v.to_owned());
            }
            _ => {
                return Err(Failure::new(exit::USAGE, format!("-e {kv}: expected KEY=VALUE")));
            }
        }
    }
    if tty && let Ok(term) = std::env::var("TERM") {
        env.entry("TERM".into()).or_insert(term);
    }
    Ok(ExecStart {
        target: None,
        namespaces: args.ns.namespaces()?.into_iter().map(|n| n as i32).collect(),
        argv: args.command.clone(),
        env,
        workdir: args.workdir.clone().unwrap_or_default(),
        tty,
        stdin: args.stdin || tty,
        no_mount_proc: args.no_mount_proc,
        all: args.ns.all,
        window: if tty {
            terminal::size().map(|(rows, cols)| WindowSize { rows, cols })
        } else {
            None
        },
    })
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

enum Sink {
    Open,
    /// The local reader went away (`| head`): not an error.
    Closed,
}

fn write_out(w: &mut impl Write, data: &[u8]) -> Result<Sink, Failure> {
    match w.write_all(data) {
        Ok(()) => Ok(Sink::Open),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Sink::Closed),
        Err(e) => Err(Failure::own(format!("cannot write the command's output: {e}"))),
    }
}

pub async fn run(args: ExecArgs) -> Result<u8, Failure> {
    let tty = args.tty && std::io::stdin().is_terminal();
    if args.tty && !tty {
        eprintln!("warning: stdin is not a terminal; running without a TTY (-t ignored)");
    }
    let mut start = start_message(&args, tty)?;
    let stdin_on = start.stdin;
    let reached = cluster::reach(&args.kube, &args.target, args.container.as_deref()).await?;
    start.target = Some(reached.target);
    let mut client = AgentClient::new(reached.channel).max_decoding_message_size(MAX_MESSAGE);

    let (req_tx, req_rx) = mpsc::channel(16);
    req_tx
        .send(ExecRequest {
            msg: Some(In::Start(start)),
        })
        .await
        .map_err(|_| Failure::own("internal error: request stream closed"))?;
    let response = client
        .exec(ReceiverStream::new(req_rx))
        .await
        .map_err(|s| transport::status_failure(&s))?;
    crate::timings::mark("grpc");
    transport::warn_version_skew(response.metadata());
    let mut replies = response.into_inner();

    let raw = if tty { RawMode::enable() } else { None };
    if stdin_on {
        forward_stdin(req_tx.clone());
    }
    let sig = |k| signal(k).map_err(|e| Failure::own(format!("cannot handle signals: {e}")));
    let (mut int, mut term, mut hup, mut quit, mut winch) = (
        sig(SignalKind::interrupt())?,
        sig(SignalKind::terminate())?,
        sig(SignalKind::hangup())?,
        sig(SignalKind::quit())?,
        sig(SignalKind::window_change())?,
    );
    let send_signal = |n: i32| {
        let tx = req_tx.clone();
        async move {
            let _ = tx
                .send(ExecRequest {
                    msg: Some(In::Signal(n)),
                })
                .await;
        }
    };

    // Plain files over dups of fds 1 and 2: std's stdout is line-buffered
    // and scans every chunk for newlines, which binary output pays for.
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| Failure::own(format!("cannot use stdout/stderr: {e}")))
    };
    let mut stdout = dup(std::io::stdout().as_fd())?;
    let mut stderr = dup(std::io::stderr().as_fd())?;
    let code = loop {
        tokio::select! {
            reply = replies.message() => match reply {
                Ok(Some(r)) => match r.msg {
                    Some(Out::Stdout(b)) => {
                        if let Sink::Closed = write_out(&mut stdout, &b)? {
                            break 0;
                        }
                    }
                    Some(Out::Stderr(b)) => {
                        if let Sink::Closed = write_out(&mut stderr, &b)? {
                            break 0;
                        }
                    }
                    Some(Out::Exited(e)) => {
                        drop(raw);
                        if !e.error.is_empty() {
                            eprintln!("kubectl-ns: {}", e.error);
                        }
                        crate::timings::mark("exec");
                        let (code, signal) = match e.status {
                            Some(exited::Status::Code(c)) => (Some(c), None),
                            Some(exited::Status::Signal(s)) => (None, Some(s)),
                            None => (None, None),
                        };
                        return Ok(exit::from_remote(code, signal));
                    }
                    Some(Out::Started(s)) => {
                        // A raw terminal does not turn \n into \r\n.
                        let eol = if raw.is_some() { "\r\n" } else { "\n" };
                        for n in s.notices {
                            eprint!("kubectl-ns: note: {n}{eol}");
                        }
                    }
                    None => {}
                },
                Ok(None) => {
                    return Err(Failure::own("the agent ended the session without an exit status"));
                }
                Err(s) => {
                    drop(raw);
                    return Err(transport::status_failure(&s));
                }
            },
            _ = int.recv() => send_signal(libc::SIGINT).await,
            _ = term.recv() => send_signal(libc::SIGTERM).await,
            _ = hup.recv() => send_signal(libc::SIGHUP).await,
            _ = quit.recv() => send_signal(libc::SIGQUIT).await,
            _ = winch.recv(), if tty => {
                if let Some((rows, cols)) = terminal::size() {
                    let _ = req_tx.send(ExecRequest { msg: Some(In::Resize(WindowSize { rows, cols })) }).await;
                }
            }
        }
    };
    Ok(code)
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
        assert_eq!(e.code, exit::USAGE);
        assert!(e.message.contains("no namespace chosen"));
    }
}
