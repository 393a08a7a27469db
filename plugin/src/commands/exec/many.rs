//! `kubectl ns exec -l SELECTOR`: one command in many pods at once. Each
//! pod's output comes line by line, prefixed `[NS/POD/CONTAINER]` (stdout
//! and stderr kept apart), then a summary; `-o json` gives one object per
//! pod instead, for scripts.

use std::io::{IsTerminal, Write};

use futures_util::StreamExt;

use k8s_openapi::api::core::v1::Pod;
use kns_proto::agent::agent_client::AgentClient;
use kns_proto::agent::exec_request::Msg as In;
use kns_proto::agent::exec_response::Msg as Out;
use kns_proto::agent::{ExecRequest, ExecResponse, Exited};
use serde::Serialize;

use super::start::{MAX_MESSAGE, check_started, start_message, status_of};
use crate::agent::fanout::{self, Scope};
use crate::agent::route::{self, Route};
use crate::cli::target::DirectTarget;
use crate::cli::{ExecArgs, ManyOutput};
use crate::error::{self, Failure, LocalError, ResolveError, UsageError};
use crate::kube::resolve;

/// What became of one pod.
#[derive(Debug, Default, Serialize)]
struct PodResult {
    namespace: String,
    pod: String,
    container: String,
    node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    /// With `-o json` only: the output is collected, not printed.
    stdout: String,
    stderr: String,
    /// Why the command did not run or did not finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip)]
    outcome: Outcome,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    #[default]
    Failed,
    Exited,
    NotRunning,
    NoAgent,
}

pub async fn run(args: ExecArgs) -> Result<u8, Failure> {
    if args.tty || args.stdin {
        return Err(UsageError::ManyWithTerminal.into());
    }
    let start = start_message(&args, false)?;
    let r = route::resolver(&args.kube).await?;
    let scope = Scope {
        all_namespaces: args.all_namespaces,
        selector: args.selector.clone(),
        node: None,
    };
    let mut pods = fanout::pods(&r, &scope).await?;
    pods.sort_by_key(|p| (p.metadata.namespace.clone(), p.metadata.name.clone()));
    if pods.is_empty() {
        return Err(ResolveError::NoPodMatches {
            selector: args.selector.clone().unwrap_or_default(),
            scope: scope.describe(&r),
        }
        .into());
    }
    let json = args.output == Some(ManyOutput::Json);
    let colour = !json && std::io::stdout().is_terminal();
    // Concurrent on this task, at most --max-concurrent at a time, results
    // in NS/POD order.
    let (args, r) = (&args, &r);
    let results: Vec<PodResult> = futures_util::stream::iter(pods.iter().enumerate())
        .map(|(i, pod)| one_pod(args, r, pod, start.clone(), json, colour.then_some(i)))
        .buffered(usize::from(args.max_concurrent))
        .collect()
        .await;
    if json {
        let mut out = std::io::stdout().lock();
        for res in &results {
            let line = serde_json::to_string(res).map_err(LocalError::from)?;
            let _ = writeln!(out, "{line}");
        }
    }
    let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
    let ok = results
        .iter()
        .filter(|r| r.outcome == Outcome::Exited && r.exit_code == Some(0))
        .count();
    eprintln!(
        "kubectl-ns: {} pod(s): {ok} succeeded, {} failed, {} not running, {} without an agent",
        results.len(),
        results.len() - ok - count(Outcome::NotRunning) - count(Outcome::NoAgent),
        count(Outcome::NotRunning),
        count(Outcome::NoAgent),
    );
    // The first pod, in NS/POD order, that did not exit 0 decides.
    Ok(results
        .iter()
        .find_map(|r| match (r.outcome, r.exit_code) {
            (Outcome::Exited, Some(0)) => None,
            (Outcome::Exited, _) => Some(error::from_remote(r.exit_code, r.signal)),
            _ => Some(error::FAILURE),
        })
        .unwrap_or(0))
}

async fn one_pod(
    args: &ExecArgs,
    r: &crate::kube::resolver::Resolver,
    pod: &Pod,
    mut start: kns_proto::agent::ExecStart,
    json: bool,
    colour: Option<usize>,
) -> PodResult {
    let mut res = PodResult {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        pod: pod.metadata.name.clone().unwrap_or_default(),
        ..Default::default()
    };
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let c = match resolve::choose_container(pod, args.container.as_deref()) {
        Ok(c) => c,
        Err(f) => {
            res.outcome = if running {
                Outcome::Failed
            } else {
                Outcome::NotRunning
            };
            res.error = Some(f.to_string());
            report_error(&res, json);
            return res;
        }
    };
    res.container = c.container.clone();
    res.node = c.node.clone();
    let channel = match Route::of(&args.kube).channel(r, &c.node).await {
        Ok(ch) => ch,
        Err(f) => {
            res.outcome = Outcome::NoAgent;
            res.error = Some(f.summary());
            report_error(&res, json);
            return res;
        }
    };
    start.target = Some(DirectTarget::Container(c.container_id.clone()).to_proto());
    let tools_asked = start.tools;
    let prefix = prefix(&res, colour);
    let request = ExecRequest {
        msg: Some(In::Start(start)),
    };
    let mut client = AgentClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    // Open until the end, though the agent takes a half-close for the end
    // of stdin only: earlier agents took it for a client gone, and ended
    // the session.
    let (keep, requests) = tokio::sync::mpsc::channel(1);
    let _ = keep.send(request).await;
    let stream = match client
        .exec(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => {
            res.error = Some(error::status_failure(&s).summary());
            report_error(&res, json);
            return res;
        }
    };
    let (mut out, mut err) = relay(stream, &mut res, tools_asked, json, &prefix).await;
    drop(keep);
    out.flush(&prefix, false);
    err.flush(&prefix, true);
    if res.error.is_some() {
        report_error(&res, json);
    }
    res
}

/// Relays one pod's output (prefixed lines, or collected for `-o json`)
/// until the stream ends, recording how it ended in `res`.
async fn relay(
    mut stream: tonic::Streaming<ExecResponse>,
    res: &mut PodResult,
    tools_asked: i32,
    json: bool,
    prefix: &str,
) -> (Lines, Lines) {
    let (mut out, mut err) = (Lines::default(), Lines::default());
    loop {
        match stream.message().await {
            Ok(Some(m)) => match m.msg {
                Some(Out::Stdout(b)) if json => res.stdout.push_str(&String::from_utf8_lossy(&b)),
                Some(Out::Stderr(b)) if json => res.stderr.push_str(&String::from_utf8_lossy(&b)),
                Some(Out::Stdout(b)) => out.feed(&b, prefix, false),
                Some(Out::Stderr(b)) => err.feed(&b, prefix, true),
                Some(Out::Started(s)) => {
                    if let Err(f) = check_started(tools_asked, &s) {
                        res.error = Some(f.summary());
                        break;
                    }
                }
                Some(Out::Exited(e)) => record_exit(res, &e),
                _ => {}
            },
            Ok(None) => break,
            Err(s) => {
                res.outcome = Outcome::Failed;
                res.error = Some(error::status_failure(&s).summary());
                break;
            }
        }
    }
    (out, err)
}

/// The remote status, and the agent's error and note as the pod's error.
fn record_exit(res: &mut PodResult, e: &Exited) {
    res.outcome = Outcome::Exited;
    (res.exit_code, res.signal) = status_of(e);
    let why: Vec<&str> = [e.error.as_str(), e.note.as_str()]
        .into_iter()
        .filter(|m| !m.is_empty())
        .collect();
    res.error = (!why.is_empty()).then(|| why.join("; "));
}

/// `[NS/POD/CONTAINER] `, coloured per pod on a terminal.
fn prefix(res: &PodResult, colour: Option<usize>) -> String {
    let name = format!("[{}/{}/{}]", res.namespace, res.pod, res.container);
    match colour {
        // The six readable ANSI colours, as `kubectl logs --prefix` users
        // expect a different one per pod.
        Some(i) => format!("\x1b[{}m{name}\x1b[0m ", 31 + i % 6),
        None => format!("{name} "),
    }
}

fn report_error(res: &PodResult, json: bool) {
    if !json && let Some(e) = &res.error {
        eprintln!(
            "[{}/{}/{}] kubectl-ns: {e}",
            res.namespace, res.pod, res.container
        );
    }
}

/// A stream cut into whole lines, each written with the pod's prefix in
/// one write so lines of different pods never interleave mid-line.
#[derive(Default)]
struct Lines(Vec<u8>);

impl Lines {
    fn feed(&mut self, bytes: &[u8], prefix: &str, to_stderr: bool) {
        self.0.extend_from_slice(bytes);
        if let Some(end) = self.0.iter().rposition(|b| *b == b'\n') {
            let whole: Vec<u8> = self.0.drain(..=end).collect();
            write_lines(&whole, prefix, to_stderr);
        }
    }

    /// What is left without a final newline.
    fn flush(&mut self, prefix: &str, to_stderr: bool) {
        if !self.0.is_empty() {
            self.0.push(b'\n');
            write_lines(&std::mem::take(&mut self.0), prefix, to_stderr);
        }
    }
}

fn write_lines(text: &[u8], prefix: &str, to_stderr: bool) {
    let mut buf = Vec::with_capacity(text.len() + 64);
    for line in text.split_inclusive(|b| *b == b'\n') {
        buf.extend_from_slice(prefix.as_bytes());
        buf.extend_from_slice(line);
    }
    let _ = if to_stderr {
        std::io::stderr().lock().write_all(&buf)
    } else {
        std::io::stdout().lock().write_all(&buf)
    };
}
