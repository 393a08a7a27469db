//! The scrape listener: `GET /metrics` over HTTP/1.1 on an address of its
//! own (`--metrics-listen`), so that the session API never answers HTTP and
//! the metrics port never runs a session. Anyone who reaches it may read
//! the counts, which name no user, pod or command.
//!
//! It is bounded as a scrape target needs and no more: a few connections
//! at once, one request each, and a few seconds to send it, so a client
//! that connects and stalls cannot hold the agent's only async thread or
//! its file descriptors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::metrics::Metrics;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 8;

/// How long a client has to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one connection may last, request and answer together.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The OpenMetrics text format, what Prometheus asks for first.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    On(SocketAddr),
}

impl FromStr for MetricsListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(MetricsListen::Off);
        }
        s.parse()
            .map(MetricsListen::On)
            .map_err(|_| format!("`{s}`: expected IP:PORT (as 0.0.0.0:7471) or `off`"))
    }
}

/// The scrape listener's address cannot be had. Its cause is in the
/// message, not a source: the user reads one line.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for metrics scrapes on {addr}: {error}; give a free address to --metrics-listen \
     (KNS_METRICS_LISTEN), or `off`"
)]
pub struct BindError {
    addr: SocketAddr,
    error: std::io::Error,
}

/// Binds the scrape listener: at start, so that a taken port is an error
/// the operator sees, not a scrape target that never answers.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| BindError { addr, error })
}

/// Answers scrapes on `listener` until `shutdown` turns true.
pub async fn serve(listener: TcpListener, metrics: Metrics, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            a = async {
                let permit = slots.clone().acquire_owned().await;
                (permit, listener.accept().await)
            } => a,
        };
        let (permit, (stream, _peer)) = match accepted {
            (Ok(p), Ok(a)) => (p, a),
            (_, Err(e)) => {
                // Out of file descriptors, most likely: wait rather than
                // spin on the error.
                tracing::warn!(error = %e, "cannot accept a metrics connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            (Err(_), _) => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = answer(&metrics, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            drop(permit);
        });
    }
}

fn answer<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let plain = |code: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = code;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found: metrics are at /metrics\n");
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return r;
    }
    match metrics.encode() {
        Ok(text) => {
            let mut r = Response::new(Full::new(Bytes::from(text)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(CONTENT_TYPE),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the metrics");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the metrics\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    #[test]
    fn the_flag_is_an_address_or_off() {
        assert_eq!("off".parse(), Ok(MetricsListen::Off));
        assert_eq!(
            "0.0.0.0:7471".parse(),
            Ok(MetricsListen::On(([0, 0, 0, 0], 7471).into()))
        );
        assert!(matches!("[::1]:7471".parse(), Ok(MetricsListen::On(_))));
        for bad in ["7471", "localhost:7471", "on", ""] {
            let e = bad.parse::<MetricsListen>().unwrap_err();
            assert!(e.contains("IP:PORT") && e.contains("off"), "{e}");
        }
    }

    /// A listener on a free loopback port, serving `metrics`.
    async fn started(metrics: Metrics) -> (SocketAddr, watch::Sender<bool>) {
        let listener = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(serve(listener, metrics, stopped));
        (addr, stop)
    }

    async fn ask(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn it_serves_get_metrics_and_nothing_else() {
        let metrics = Metrics::new();
        metrics.session_started();
        let (addr, stop) = started(metrics).await;
        let ok = ask(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE), "{ok}");
        assert!(
            ok.contains("\nkubectl_ns_sessions_started_total 1\n") && ok.ends_with("# EOF\n"),
            "{ok}"
        );
        let other = ask(addr, "GET /metricsx HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = ask(
            addr,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
        stop.send(true).unwrap();
    }

    #[tokio::test]
    async fn stalled_clients_hold_few_slots_and_briefly() {
        let (addr, _stop) = started(Metrics::new()).await;
        let mut stalled = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            stalled.push(TcpStream::connect(addr).await.unwrap());
        }
        // Give the listener time to take them all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(
            HEADER_TIMEOUT + Duration::from_secs(3),
            ask(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await
        .expect("answered once the stalled clients were dropped");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Its turn came only when a stalled client's time was up.
        assert!(
            started.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let mut buf = [0; 64];
        let n = stalled[0].read(&mut buf).await.unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            n == 0 || text.starts_with("HTTP/1.1 408"),
            "the stalled client was closed: {text}"
        );
    }
}
