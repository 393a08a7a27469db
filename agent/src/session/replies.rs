//! A session's replies as tonic sends them: the stream that holds the
//! session's slot until it is dropped, and that never ends with OK
//! without the tool's exit status.

use std::sync::Arc;

use kns_proto::agent::ExecResponse;
use kns_proto::agent::exec_response::Msg as Out;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::status::AgentError;

pub type Reply = Result<ExecResponse, Status>;

/// A session's replies, as tonic sends them. What it is given to hold (the
/// session's slot) is kept until tonic drops the stream: output still
/// queued for a client that stopped reading stays counted against the
/// session limit, which is what bounds the memory all sessions hold, even
/// after the session itself has ended.
///
/// A stream that ends without `exited` or an error status (the session's
/// task gone some way nobody foresaw) gets an error status in its place:
/// gRPC's OK would tell the client the output was complete.
pub struct Replies {
    rx: ReceiverStream<Reply>,
    /// `exited` or an error status has been passed on.
    concluded: bool,
    _held: Arc<dyn Send + Sync>,
}

impl Replies {
    pub fn new(rx: mpsc::Receiver<Reply>, held: Arc<dyn Send + Sync>) -> Replies {
        Replies {
            rx: ReceiverStream::new(rx),
            concluded: false,
            _held: held,
        }
    }
}

impl Stream for Replies {
    type Item = Reply;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Reply>> {
        let next = std::task::ready!(std::pin::Pin::new(&mut self.rx).poll_next(cx));
        let next = match next {
            Some(r) => {
                if matches!(
                    &r,
                    Err(_)
                        | Ok(ExecResponse {
                            msg: Some(Out::Exited(_))
                        })
                ) {
                    self.concluded = true;
                }
                Some(r)
            }
            None if !self.concluded => {
                self.concluded = true;
                tracing::error!("a session's replies ended without an exit status");
                Some(Err(AgentError::NoExitStatus.into()))
            }
            None => None,
        };
        std::task::Poll::Ready(next)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kns_proto::agent::Exited;
    use tokio_stream::StreamExt;

    use super::*;
    use kns_proto::agent::Started;

    fn replies(sent: Vec<Reply>) -> Vec<Reply> {
        let (tx, rx) = mpsc::channel(sent.len().max(1));
        for r in sent {
            tx.try_send(r).expect("room for every reply");
        }
        drop(tx);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(Replies::new(rx, Arc::new(())).collect())
    }

    fn out(msg: Out) -> Reply {
        Ok(ExecResponse { msg: Some(msg) })
    }

    #[test]
    fn replies_end_in_an_error_unless_they_concluded() {
        let got = replies(vec![
            out(Out::Started(Started::default())),
            out(Out::Stdout(Bytes::from_static(b"x"))),
        ]);
        assert_eq!(got.len(), 3, "{got:?}");
        let last = got.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::Internal, "{last:?}");
        assert!(
            last.message().contains("without the tool's exit status"),
            "{last:?}"
        );
        assert_eq!(replies(vec![]).len(), 1);
        // An exit status or an error status is the last word.
        let exited = out(Out::Exited(Exited::default()));
        assert_eq!(
            replies(vec![out(Out::Started(Started::default())), exited]).len(),
            2
        );
        let got = replies(vec![Err(Status::unavailable("shutting down"))]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().code(), tonic::Code::Unavailable);
    }
}
