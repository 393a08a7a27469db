//! `kubectl ns replay NODE/RECORDING`: one of a node's session recordings,
//! streamed by that node's agent (its Replay RPC, which checks the right),
//! written out as it is (`-o cast`) or played: each output event of the
//! asciicast printed at its time, divided by `--speed`, with pauses cut to
//! `--idle-limit`.

use std::io::Write;
use std::time::Duration;

use kns_proto::agent::ReplayRequest;
use kns_proto::agent::agent_client::AgentClient;

use crate::agent::deadline;
use crate::agent::route::{self, Route};
use crate::agent::transport::{self, AgentChannel};
use crate::cli::target::{Target, valid_name};
use crate::cli::{KubeArgs, ReplayArgs, ReplayOutput};
use crate::error::{self, Failure, LocalError, ReplayError, UsageError};
use crate::kube::resolve::KubeTarget;

/// The node and the recording `NODE/RECORDING` names. `node/NODE/RECORDING`,
/// as exec's targets write a node, is taken too. The node must be a node's
/// name (`../etc/passwd` is no node and a recording); what follows it is
/// passed on as it is: the agent alone decides what names a recording.
fn parse_target(s: &str) -> Result<(&str, &str), UsageError> {
    let unprefixed = match s.strip_prefix("node/") {
        Some(rest) if rest.matches('/').count() == 1 => rest,
        _ => s,
    };
    match unprefixed.split_once('/') {
        Some((node, recording)) if valid_name(node) && !recording.is_empty() => Ok((node, recording)),
        _ => Err(UsageError::NotARecording { given: s.to_owned() }),
    }
}

/// The channel to `node`'s agent: `--agent`'s, which is taken to be that
/// node's (and checked against the recording's name, see [`same_node`]),
/// or the port-forward to its agent pod.
async fn reach(kube: &KubeArgs, node: &str) -> Result<AgentChannel, Failure> {
    match Route::of(kube).direct() {
        Some(addr) => Ok(transport::connect(addr).await?),
        None => {
            let target = Target::Kube(KubeTarget::Node(node.to_owned()));
            Ok(route::reach(kube, &target, None).await?.channel)
        }
    }
}

/// Whether recording `name` (NODE_SESSION_UNIXTIME.cast, as the agent
/// names it) is `node`'s: what `--agent` reached is not known to be the
/// node asked for until the agent names the file.
fn same_node(asked: &str, name: &str) -> Result<(), ReplayError> {
    let node = name.rsplitn(3, '_').nth(2).unwrap_or(name);
    if node == asked {
        return Ok(());
    }
    Err(ReplayError::OtherNode {
        asked: asked.to_owned(),
        node: node.to_owned(),
        name: name.to_owned(),
    })
}

pub async fn run(args: ReplayArgs) -> Result<u8, Failure> {
    let (node, recording) = parse_target(&args.target)?;
    let direct = Route::of(&args.kube).direct().is_some();
    let mut client = AgentClient::new(reach(&args.kube, node).await?);
    crate::timings::grpc_call();
    let request = ReplayRequest {
        recording: recording.to_owned(),
    };
    let response = deadline::answered(async {
        client
            .replay(request)
            .await
            .map_err(|s| error::status_failure(&s))
    })
    .await?;
    transport::warn_version_skew(response.metadata());
    let mut stream = response.into_inner();
    let mut player = match args.output {
        Some(ReplayOutput::Cast) => None,
        None => Some(Player::new(args.speed, args.idle_limit)),
    };
    let mut out = std::io::stdout().lock();
    loop {
        let next =
            deadline::answered(async { stream.message().await.map_err(|s| error::status_failure(&s)) });
        let Some(chunk) = next.await? else { break };
        if direct && !chunk.name.is_empty() {
            same_node(node, &chunk.name)?;
        }
        let shown = match &mut player {
            None => out.write_all(&chunk.data).and_then(|()| out.flush()),
            Some(p) => {
                if !chunk.name.is_empty() {
                    p.name = chunk.name;
                    eprintln!("kubectl-ns: replaying {}", p.name);
                }
                let frames = p.cast.feed(&chunk.data, &p.name)?;
                p.show(&mut out, frames).await
            }
        };
        if !reading(shown)? {
            return Ok(0);
        }
    }
    if let Some(p) = &mut player {
        let frames = p.cast.finish(&p.name)?;
        reading(p.show(&mut out, frames).await)?;
    }
    Ok(0)
}

/// Whether stdout is still read: a reader that went away (`| head`) ends
/// the replay quietly, as there is no one left to show it to.
fn reading(shown: std::io::Result<()>) -> Result<bool, LocalError> {
    match shown {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(LocalError::Write(e)),
    }
}

/// Plays frames as they come, each at its time from the first.
struct Player {
    name: String,
    cast: Cast,
    started: Option<tokio::time::Instant>,
}

impl Player {
    fn new(speed: f64, idle_limit: Duration) -> Player {
        Player {
            name: "the recording".to_owned(),
            cast: Cast::new(speed, idle_limit),
            started: None,
        }
    }

    async fn show(&mut self, out: &mut impl Write, frames: Vec<Frame>) -> std::io::Result<()> {
        let started = *self.started.get_or_insert_with(tokio::time::Instant::now);
        for f in frames {
            tokio::time::sleep_until(started + f.at).await;
            out.write_all(f.text.as_bytes())?;
            out.flush()?;
        }
        Ok(())
    }
}

/// Output to show, and when: from the start of the playback.
#[derive(Debug, PartialEq)]
struct Frame {
    at: Duration,
    text: String,
}

/// An asciicast v2 file read as it arrives: its header line, then one
/// `[time, code, data]` event a line; `o` events become frames, the others
/// (`i` input, `r` resize, `m` markers) show nothing.
struct Cast {
    speed: f64,
    idle_limit: Duration,
    /// What has come of the line not yet whole.
    partial: Vec<u8>,
    /// Lines read so far.
    lines: usize,
    /// The time in the recording of the last output shown.
    last: f64,
    /// Where the playback is, in its own time.
    at: Duration,
}

impl Cast {
    fn new(speed: f64, idle_limit: Duration) -> Cast {
        Cast {
            speed,
            idle_limit,
            partial: Vec::new(),
            lines: 0,
            last: 0.0,
            at: Duration::ZERO,
        }
    }

    /// The frames of the lines `data` completes.
    fn feed(&mut self, data: &[u8], name: &str) -> Result<Vec<Frame>, ReplayError> {
        self.partial.extend_from_slice(data);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        let mut frames = Vec::new();
        for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            frames.extend(self.line(line, name)?);
        }
        Ok(frames)
    }

    /// Checks what is left once the stream has ended: a last line without
    /// its newline (a recording cut short) is still shown, but a file
    /// without a header is no recording.
    fn finish(&mut self, name: &str) -> Result<Vec<Frame>, ReplayError> {
        let rest = std::mem::take(&mut self.partial);
        let frames = if rest.is_empty() {
            Vec::new()
        } else {
            self.line(&rest, name)?.into_iter().collect()
        };
        if self.lines == 0 {
            return Err(self.bad(name, "the file is empty"));
        }
        Ok(frames)
    }

    fn bad(&self, name: &str, why: impl Into<String>) -> ReplayError {
        ReplayError::NotACast {
            name: name.to_owned(),
            line: self.lines,
            why: why.into(),
        }
    }

    fn line(&mut self, line: &[u8], name: &str) -> Result<Option<Frame>, ReplayError> {
        self.lines += 1;
        if self.lines == 1 {
            let header: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| self.bad(name, e.to_string()))?;
            return match header.get("version").and_then(serde_json::Value::as_u64) {
                Some(2) => Ok(None),
                _ => Err(self.bad(name, "the header does not say \"version\": 2")),
            };
        }
        let (t, code, data): (f64, String, String) =
            serde_json::from_slice(line).map_err(|e| self.bad(name, format!("not an event: {e}")))?;
        if code != "o" {
            return Ok(None);
        }
        // A pause as recorded, cut to the limit, then at the speed asked.
        let pause = Duration::try_from_secs_f64((t - self.last).max(0.0))
            .unwrap_or(Duration::MAX)
            .min(self.idle_limit);
        self.last = t;
        self.at += pause.div_f64(self.speed);
        Ok(Some(Frame {
            at: self.at,
            text: data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_is_the_nodes_its_name_begins_with() {
        assert!(same_node("worker-3", "worker-3_7_1796281249.cast").is_ok());
        assert!(same_node("node", "node_7_1796281249.cast").is_ok());
        let e = same_node("worker-3", "worker-4_7_1796281249.cast").unwrap_err();
        assert!(e.to_string().contains("a recording of node worker-4"), "{e}");
        assert!(same_node("worker-3", "worker-3.cast").is_err());
    }

    const CAST: &str = concat!(
        r#"{"version": 2, "width": 80, "height": 24}"#,
        "\n",
        r#"[0.5, "o", "one "]"#,
        "\n",
        r#"[0.6, "i", "typed"]"#,
        "\n",
        r#"[0.7, "r", "100x30"]"#,
        "\n",
        r#"[100.5, "o", "two\r\n"]"#,
        "\n",
        r#"[101.5, "o", "caf\u00e9"]"#,
        "\n",
    );

    fn frames(cast: &mut Cast, text: &str) -> Vec<Frame> {
        // Split anywhere, as the chunks of the stream may be.
        let mut out = Vec::new();
        for piece in text.as_bytes().chunks(7) {
            out.extend(cast.feed(piece, "r.cast").unwrap());
        }
        out.extend(cast.finish("r.cast").unwrap());
        out
    }

    #[test]
    fn output_events_play_at_their_time_over_the_speed_with_pauses_cut_to_the_limit() {
        let mut cast = Cast::new(2.0, Duration::from_secs(2));
        let got = frames(&mut cast, CAST);
        let want = [
            (Duration::from_millis(250), "one "),
            // A 100 s pause, cut to 2 s, at twice the speed.
            (Duration::from_millis(1250), "two\r\n"),
            (Duration::from_millis(1750), "café"),
        ];
        let got: Vec<(Duration, &str)> = got.iter().map(|f| (f.at, f.text.as_str())).collect();
        assert_eq!(got, want, "input and resize events show nothing");
    }

    #[test]
    fn a_last_line_without_its_newline_still_plays() {
        let mut cast = Cast::new(1.0, Duration::ZERO);
        let cut = CAST.trim_end_matches('\n');
        let text: String = frames(&mut cast, cut).into_iter().map(|f| f.text).collect();
        assert_eq!(text, "one two\r\ncafé");
    }

    #[test]
    fn what_is_not_an_asciicast_v2_says_where() {
        for (text, line, why) in [
            ("", 0, "empty"),
            ("{\"version\": 1}\n", 1, "version"),
            ("root:x:0:0:root:/root:/bin/bash\n", 1, "expected"),
            (
                "{\"version\": 2}\n[0.1, \"o\", \"a\"]\n[\"o\"]\n",
                3,
                "not an event",
            ),
        ] {
            let mut cast = Cast::new(1.0, Duration::ZERO);
            let e = cast
                .feed(text.as_bytes(), "x.cast")
                .and_then(|_| cast.finish("x.cast"))
                .unwrap_err();
            assert!(
                matches!(e, ReplayError::NotACast { line: at, .. } if at == line),
                "{e}"
            );
            assert!(
                e.to_string().contains(why) && e.to_string().starts_with("x.cast"),
                "{e}"
            );
        }
    }

    #[test]
    fn targets_are_a_node_and_a_recording() {
        assert_eq!(parse_target("w-3/7").unwrap(), ("w-3", "7"));
        assert_eq!(parse_target("node/w-3/7").unwrap(), ("w-3", "7"));
        assert_eq!(
            parse_target("w-3/w-3_7_1796281249.cast").unwrap(),
            ("w-3", "w-3_7_1796281249.cast")
        );
        // Left to the agent, which refuses it.
        assert_eq!(
            parse_target("w-3/../etc/passwd").unwrap(),
            ("w-3", "../etc/passwd")
        );
        assert_eq!(
            parse_target("node/../etc/passwd").unwrap(),
            ("node", "../etc/passwd")
        );
        for bad in ["w-3", "w-3/", "/7", "node/w-3/", "../etc/passwd", "W-3/7"] {
            let e = parse_target(bad).unwrap_err();
            assert_eq!(Failure::from(e).code(), error::USAGE, "{bad}");
        }
    }
}
