//! Recorded sessions: what the operator's policy chooses to keep
//! ([`crate::access::recording`]) written as an asciicast v2 file
//! ([`cast`]) in the node's recordings directory ([`store`]).
//!
//! The session's pumps hand each chunk to a [`Tap`] as they send it to the
//! client; a thread of the recording's own encodes and writes, so the
//! session's one async thread never waits on the disk. Lines are written
//! whole, many at a time but never a part of one, so a crash of the agent
//! leaves a file that replays up to its last write. The tap is bounded: a
//! disk slower than the session slows the session, and nothing shown is
//! left out of its recording below the size limit.

pub mod cast;
pub mod store;

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use cast::Kind;
pub use store::{LookupError, Removed, Store, StoreError};

/// Chunks in flight to the writer: with the pumps' chunks of up to 1 MiB,
/// a few MiB per recorded session at most.
const IN_FLIGHT: usize = 8;

/// Lines are gathered up to this much before a write, unless nothing else
/// is waiting.
const BATCH: usize = 256 * 1024;

/// One thing that happened on the terminal, when it happened.
#[derive(Debug)]
enum Event {
    /// Output of the tool; `stderr`: of its stderr (a session without a
    /// terminal), which replays as output too.
    Output(Instant, Bytes, bool),
    Input(Instant, Bytes),
    Resize(Instant, u16, u16),
}

/// Where the session's pumps hand what they move; cloned per pump.
#[derive(Debug, Clone)]
pub struct Tap {
    tx: mpsc::Sender<Event>,
    input: bool,
    stderr: bool,
}

impl Tap {
    pub fn records_input(&self) -> bool {
        self.input
    }

    /// The tap for the tool's stderr, which has its own split characters.
    pub fn for_stderr(&self) -> Tap {
        Tap {
            stderr: true,
            ..self.clone()
        }
    }

    pub async fn output(&self, data: &Bytes) {
        let _ = self
            .tx
            .send(Event::Output(Instant::now(), data.clone(), self.stderr))
            .await;
    }

    /// What the user typed, when the policy records input.
    pub async fn input(&self, data: &Bytes) {
        if self.input {
            let _ = self.tx.send(Event::Input(Instant::now(), data.clone())).await;
        }
    }

    /// Not waited for: a resize lost while the writer is behind replays at
    /// the old size until the next one, which harms nothing shown.
    pub fn resize(&self, cols: u16, rows: u16) {
        let _ = self.tx.try_send(Event::Resize(Instant::now(), cols, rows));
    }
}

/// What the audit trail says of a session's recording: its name, and what
/// was removed to make room, at the start; its size and hash at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The session went past the size limit: the rest was not recorded.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Why the file stopped short, when writing it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Older recordings removed to make room for this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<Removed>,
}

/// A recording being written.
#[derive(Debug)]
pub struct Recording {
    pub name: String,
    /// Recordings removed to make room for this one.
    pub removed: Vec<Removed>,
    tap: Tap,
    writer: std::thread::JoinHandle<Note>,
    /// Keeps the file live in the store (never removed to make room)
    /// until the recording is dropped.
    _live: Live,
}

/// A recording's place among the store's live ones.
#[derive(Debug)]
struct Live {
    store: Arc<Store>,
    name: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.store.done(&self.name);
    }
}

/// What a new recording is of.
#[derive(Debug)]
pub struct Session<'a> {
    pub node: &'a str,
    pub id: u64,
    pub window: (u16, u16),
    pub input: bool,
    pub max_session_bytes: u64,
    pub max_total_bytes: u64,
}

impl Recording {
    /// Makes the session's file, writes its header (so a disk that cannot
    /// take it refuses the session before anything runs) and starts its
    /// writer. It blocks on the disk: call it off the async thread.
    pub fn start(store: &Arc<Store>, s: &Session<'_>) -> Result<Recording, StoreError> {
        let (mut file, name, removed) = store.create(s.node, s.id, s.max_session_bytes, s.max_total_bytes)?;
        let live = Live {
            store: store.clone(),
            name: name.clone(),
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let header = cast::header(
            s.window.0,
            s.window.1,
            timestamp,
            &format!("{} session {}", s.node, s.id),
        );
        let path = store.dir().join(&name);
        file.write_all(&header).map_err(|source| StoreError::Io {
            what: "write",
            path: path.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let writer = Writer {
            file,
            name: name.clone(),
            started: Instant::now(),
            max: s.max_session_bytes,
            size: header.len() as u64,
            hash: Sha256::new_with_prefix(&header),
            truncated: false,
            error: None,
        };
        let writer = std::thread::Builder::new()
            .name("kns-record".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::Io {
                what: "start the writer of",
                path,
                source,
            })?;
        Ok(Recording {
            name,
            removed,
            tap: Tap {
                tx,
                input: s.input,
                stderr: false,
            },
            writer,
            _live: live,
        })
    }

    pub fn tap(&self) -> Tap {
        self.tap.clone()
    }

    /// The audit's note at the session's start.
    pub fn started(&self) -> Note {
        Note {
            name: self.name.clone(),
            removed: self.removed.clone(),
            ..Note::default()
        }
    }

    /// Waits, off the async thread, for the writer to have written all the
    /// taps handed it (every clone of the tap must be dropped first).
    pub async fn finish(self) -> Note {
        drop(self.tap);
        let name = self.name;
        tokio::task::spawn_blocking(move || self.writer.join())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| Note {
                name,
                error: Some("the recording's writer failed".into()),
                ..Note::default()
            })
    }
}

struct Writer {
    file: File,
    name: String,
    started: Instant,
    max: u64,
    size: u64,
    hash: Sha256,
    truncated: bool,
    error: Option<String>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Event>) -> Note {
        // stdout, stderr, input: each its own split characters.
        let mut streams: [cast::Stream; 3] = Default::default();
        let mut buf = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            self.encode(&mut buf, &mut streams, ev);
            // Take what else is already waiting into the same write.
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(ev) => self.encode(&mut buf, &mut streams, ev),
                    Err(_) => break,
                }
            }
            self.write(&mut buf);
        }
        self.write(&mut buf);
        if let Err(e) = self.file.sync_data() {
            self.error.get_or_insert(e.to_string());
        }
        Note {
            name: self.name,
            size: Some(self.size),
            sha256: Some(format!("{:x}", self.hash.finalize())),
            truncated: self.truncated,
            error: self.error,
            removed: Vec::new(),
        }
    }

    fn encode(&self, buf: &mut Vec<u8>, [out, err, input]: &mut [cast::Stream; 3], ev: Event) {
        let at = |t: Instant| t.saturating_duration_since(self.started);
        match ev {
            Event::Output(t, d, false) => out.event(buf, at(t), Kind::Output, &d),
            Event::Output(t, d, true) => err.event(buf, at(t), Kind::Output, &d),
            Event::Input(t, d) => input.event(buf, at(t), Kind::Input, &d),
            Event::Resize(t, c, r) => cast::resize(buf, at(t), c, r),
        }
    }

    /// Writes whole lines, up to the size limit; past it, a last line says
    /// the recording stops there.
    fn write(&mut self, buf: &mut Vec<u8>) {
        if buf.is_empty() || self.truncated || self.error.is_some() {
            buf.clear();
            return;
        }
        if self.size + buf.len() as u64 > self.max {
            let room = (self.max.saturating_sub(self.size)) as usize;
            let cut = buf[..room.min(buf.len())]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            buf.truncate(cut);
            let note = format!(
                "\r\n[kubectl-ns: the recording stops here, at the policy's maxSessionBytes of {} bytes]\r\n",
                self.max
            );
            cast::Stream::default().event(buf, self.started.elapsed(), Kind::Output, note.as_bytes());
            self.truncated = true;
        }
        match self.file.write_all(buf) {
            Ok(()) => {
                self.size += buf.len() as u64;
                self.hash.update(&buf[..]);
            }
            Err(e) => self.error = Some(e.to_string()),
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(max: u64) -> Session<'static> {
        Session {
            node: "node-a",
            id: 7,
            window: (80, 24),
            input: false,
            max_session_bytes: max,
            max_total_bytes: u64::MAX,
        }
    }

    async fn record(store: &Arc<Store>, max: u64, chunks: &[&'static [u8]]) -> Note {
        let r = Recording::start(store, &session(max)).expect("a recording");
        let tap = r.tap();
        for c in chunks {
            tap.output(&Bytes::from_static(c)).await;
            tap.input(&Bytes::from_static(b"typed")).await;
        }
        drop(tap);
        r.finish().await
    }

    #[tokio::test]
    async fn the_file_is_an_asciicast_with_its_size_and_hash_and_input_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(tmp.path().to_owned()));
        let done = record(&store, 1 << 20, &[b"hello ", b"world\r\n"]).await;
        let bytes = std::fs::read(tmp.path().join(&done.name)).unwrap();
        assert_eq!(done.size, Some(bytes.len() as u64));
        assert_eq!(done.sha256, Some(format!("{:x}", Sha256::digest(&bytes))));
        assert!(!done.truncated && done.error.is_none(), "{done:?}");
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["version"], 2);
        let out: String = lines[1..].iter().map(|e| e[2].as_str().unwrap()).collect();
        assert_eq!(
            out, "hello world\r\n",
            "no input event: the policy did not ask for input"
        );
    }

    #[tokio::test]
    async fn past_the_size_limit_the_recording_says_it_stops_and_stays_whole_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(tmp.path().to_owned()));
        let big: &'static [u8] = &[b'x'; 4096];
        let done = record(&store, 2048, &[b"first\n", big, big]).await;
        assert!(done.truncated, "{done:?}");
        let text = std::fs::read_to_string(tmp.path().join(&done.name)).unwrap();
        assert!(text.ends_with("\n"));
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        }
        assert!(text.contains("the recording stops here"), "{text}");
        assert!(!text.contains("xxxx"), "the big chunks are past the limit");
    }
}
