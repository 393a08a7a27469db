//! The Replay RPC: a session's recording read back as it is on disk, to a
//! caller with the right of its own for that (`get nodes/recordings` on
//! the node): a recording shows what other users' sessions showed, which
//! neither running a tool nor reading an API object grants.

use kns_proto::agent::{ReplayChunk, ReplayRequest};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::access::audit::{self, Event, Record};
use crate::access::authz::{Action, Subject};
use crate::access::identity::Caller;
use crate::record::{LookupError, Note, StoreError};
use crate::rpc::service::{AgentService, versioned};
use crate::status::AgentError;

/// The most a chunk holds.
const CHUNK: usize = 64 * 1024;

/// Chunks read ahead of what the client has taken.
const READ_AHEAD: usize = 4;

/// A recording's chunks, as tonic sends them.
pub type Chunks = ReceiverStream<Result<ReplayChunk, Status>>;

impl AgentService {
    /// Serves one Replay: identifies and authorizes the caller, finds the
    /// recording, writes the `replay` line, and streams the file.
    pub(super) async fn replay_recording(
        &self,
        request: Request<ReplayRequest>,
    ) -> Result<Response<Chunks>, AgentError> {
        let caller = Caller::of(&request);
        let wanted = request.into_inner().recording;
        let target = audit::Target {
            node: self.access.node_name().map(str::to_owned),
            requested: wanted.clone(),
            ..audit::Target::default()
        };
        let mut record = Record::new(Event::Replay, Action::Replay.as_str(), target);
        let deny = |r: &Record, e: AgentError| {
            self.emit_denial(r.clone(), &e);
            e
        };
        let (who, method) = self
            .access
            .identify(&caller)
            .await
            .map_err(|e| deny(&record, e.into()))?;
        record.user = Some(who.clone());
        record.auth = Some(method);
        self.access
            .authorize(&who, method, Action::Replay, &Subject::Node)
            .await
            .map_err(|e| deny(&record, e.into()))?;
        let store = self.recordings.clone();
        let node = self.recording_node().to_owned();
        let (file, name) = tokio::task::spawn_blocking(move || store.open(&node, &wanted))
            .await
            .map_err(|e| AgentError::Internal(format!("the recording's lookup failed: {e}")))?
            .map_err(|e| match e {
                // A name that reaches for what is not a recording is
                // audited as the refusal it is.
                LookupError::BadName(_) | LookupError::NotAFile { .. } => deny(&record, e.into()),
                e => e.into(),
            })?;
        let size = file.metadata().map(|m| m.len()).ok();
        record.recording = Some(Note {
            name: name.clone(),
            size,
            ..Note::default()
        });
        tracing::info!(recording = name, user = who.username, size, "replay");
        self.audit.emit(&record);
        let path = self.recordings.dir().join(&name);
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::spawn(send_file(tokio::fs::File::from_std(file), name, path, tx));
        Ok(versioned(ReceiverStream::new(rx)))
    }
}

/// Sends the file in chunks of [`CHUNK`], the first naming it (even when
/// the file is empty, so the client learns the name); a read that fails
/// ends the stream with its error, never with OK, which would pass a
/// truncated recording for a whole one. Stops when the client goes.
async fn send_file(
    mut file: tokio::fs::File,
    name: String,
    path: std::path::PathBuf,
    tx: mpsc::Sender<Result<ReplayChunk, Status>>,
) {
    let mut name = Some(name);
    loop {
        let mut data = Vec::with_capacity(CHUNK);
        if let Err(source) = (&mut file).take(CHUNK as u64).read_to_end(&mut data).await {
            let e = LookupError::Io(StoreError::Io {
                what: "read",
                path,
                source,
            });
            let _ = tx.send(Err(AgentError::from(e).into())).await;
            return;
        }
        if data.is_empty() && name.is_none() {
            return;
        }
        let last = data.len() < CHUNK;
        let chunk = ReplayChunk {
            data: data.into(),
            name: name.take().unwrap_or_default(),
        };
        if tx.send(Ok(chunk)).await.is_err() || last {
            return;
        }
    }
}
