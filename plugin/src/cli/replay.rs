//! `replay`'s arguments: which recording on which node, and how to play it.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cli::{KubeArgs, parse_duration};

/// Replay a recorded session: what its terminal showed, at its pace.
///
/// The node's kubectl-ns policy (its `recording:` section) chooses which
/// sessions the agent records: each one is an asciicast v2 file in the
/// node's recordings directory, kept by the agent on that node, and its
/// user was told so when it started.
///
/// NODE/RECORDING is the node the session ran on and, after the slash,
/// either of:
///   the file's name     worker-3/worker-3_7_1796281249.cast
///                       as the agent's audit trail names it: `recording.name`
///                       on the session's start and end lines
///   the session's id    worker-3/7
///                       the newest recording of session 7 on that node (ids
///                       start again at 1 when the agent restarts)
///
/// Needs `get nodes/recordings` in API group kubectl-ns.io on that node, a
/// right of its own (a recording shows what another user's session
/// showed); the ClusterRole kubectl-ns-recording-viewer grants it:
///   kubectl create clusterrolebinding alice-recordings \
///     --clusterrole=kubectl-ns-recording-viewer --user=alice
///
/// Examples:
///   kubectl ns replay worker-3/7
///   kubectl ns replay worker-3/7 --speed 4 --idle-limit 500ms
///   kubectl ns replay worker-3/worker-3_7_1796281249.cast -o cast > s.cast
///   kubectl ns replay --agent unix:///run/kubectl-ns/agent.sock worker-3/7   # on the node, as root
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// NODE/RECORDING: the node, then the recording's file name or the
    /// session's id.
    // Not `target`, which completion would answer with pods.
    #[arg(id = "recording", value_name = "NODE/RECORDING")]
    pub target: String,
    /// `cast` writes the recording to stdout as the agent keeps it, byte
    /// for byte (for asciinema, or to keep), instead of playing it.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<ReplayOutput>,
    /// Play this many times as fast as it was recorded (0.5: half as fast).
    #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// Cut every pause of the recording to at most this long, before
    /// --speed applies, as asciinema's --idle-time-limit does (0: no
    /// pauses at all).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub idle_limit: Duration,
}

/// `replay -o`'s formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayOutput {
    /// The asciicast v2 file, unchanged.
    Cast,
}

/// A speed: a positive number.
fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => Ok(n),
        _ => Err(format!("`{s}`: expected a positive number, such as 2 or 0.5")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_are_positive_numbers() {
        assert_eq!(parse_speed("2"), Ok(2.0));
        assert_eq!(parse_speed("0.5"), Ok(0.5));
        for bad in ["0", "-1", "inf", "NaN", "fast", ""] {
            assert!(parse_speed(bad).unwrap_err().contains("positive number"), "{bad}");
        }
    }
}
