//! The port-forward subresource: the WebSocket upgrade with subprotocol
//! `v4.channel.k8s.io` (the upgrade itself shared with `exec`), and the
//! bridge from its data channel to a TCP port in the pod's network
//! namespace, as the kubelet makes it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::State;
use super::objects::{is_pod, query};
use super::rbac::verb;
use super::responses::{About, bad_request};

const PORTFORWARD_PROTOCOL: &str = "v4.channel.k8s.io";

pub(super) async fn portforward(
    req: Request<Incoming>,
    state: &Mutex<State>,
    forbid: &AtomicBool,
    user: &str,
    ns: &str,
    name: &str,
) -> Response<Full<Bytes>> {
    let pod = About::core("pods", name);
    if forbid.load(Ordering::SeqCst) {
        return pod.forbidden(user, verb(req.method(), true), "portforward", Some(ns));
    }
    let target = {
        let st = state.lock().expect("state");
        // As the API server: a pod that does not exist is 404, whatever
        // was forwarded to it before.
        let exists = st.pods.iter().any(|p| is_pod(p, ns, name));
        st.forwards
            .get(&(ns.to_owned(), name.to_owned()))
            .copied()
            .filter(|_| exists)
    };
    let Some(netns) = target else {
        return pod.not_found();
    };
    let port: u16 = match query(&req).get("ports").and_then(|p| p.parse().ok()) {
        Some(p) => p,
        None => {
            return bad_request("missing or invalid ports".into());
        }
    };
    websocket(req, &[PORTFORWARD_PROTOCOL], move |ws| bridge(ws, port, netns))
}

/// The socket of an upgraded request, as [`websocket`] hands it on.
pub(super) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Accepts a WebSocket upgrade with the first subprotocol the client offers
/// that is among `protocols`, as the API server's `wsstream` picks one,
/// then runs `serve` on the socket; or the 400 for
/// a request that is no upgrade or offers none of them.
pub(super) fn websocket<F, Fut>(
    req: Request<Incoming>,
    protocols: &[&'static str],
    serve: F,
) -> Response<Full<Bytes>>
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .find_map(|p| protocols.iter().copied().find(|ours| *ours == p.trim()));
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
    else {
        return bad_request("not a WebSocket upgrade".into());
    };
    let Some(protocol) = offered else {
        return bad_request(format!("none of the subprotocols {protocols:?} offered"));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        serve(ws).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

/// Connects to 127.0.0.1:`port` inside the network namespace of process
/// `pid`, as the kubelet's port-forward does for a pod: on a thread of its
/// own, which joins that namespace and ends, so no other task's sockets are
/// made there.
pub async fn connect_in_netns(pid: i32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| -> std::io::Result<std::net::TcpStream> {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let std = rx.await.map_err(std::io::Error::other)??;
    tokio::net::TcpStream::from_std(std)
}

/// Bridges one forwarded port (channels 0 and 1) to the pod's loopback.
async fn bridge<S>(ws: WebSocketStream<S>, port: u16, netns: i32)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    for ch in [0u8, 1] {
        if sink.send(Message::binary(vec![ch, lo, hi])).await.is_err() {
            return;
        }
    }
    // Go's net package, which the API server and kubelet are built on, sets
    // TCP_NODELAY on every connection; so does the fake.
    let tcp = match connect_in_netns(netns, port).await {
        Ok(t) => {
            let _ = t.set_nodelay(true);
            t
        }
        Err(e) => {
            let mut msg = vec![1u8];
            msg.extend_from_slice(format!("error forwarding port {port}: {e}").as_bytes());
            let _ = sink.send(Message::binary(msg)).await;
            let _ = sink.close().await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    let up = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) if b.len() > 1 && b[0] == 0 => b,
                Message::Close(_) => break,
                _ => continue,
            };
            if wr.write_all(&data[1..]).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rd.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf[0] = 0;
                if sink.send(Message::binary(buf[..=n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = sink.close().await;
    up.abort();
}
