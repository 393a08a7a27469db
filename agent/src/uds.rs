//! Dialling gRPC servers on unix sockets: the CRI runtime, and the agent
//! itself for its readiness probe.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::Uri;

/// A connector for tonic's `Endpoint::connect_with_connector{,_lazy}` that
/// dials `path`. The endpoint's URI is then ignored, but tonic needs a
/// syntactically valid one (`http://name.invalid`).
pub fn connector(
    path: impl Into<PathBuf>,
) -> impl tower::Service<Uri, Response = TokioIo<UnixStream>, Error = std::io::Error, Future: Send>
+ Clone
+ Send
+ 'static {
    let path = path.into();
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) }
    })
}
