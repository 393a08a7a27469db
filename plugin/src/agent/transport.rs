//! Reaching an agent: a unix socket or a TCP address, or a port-forward
//! carrying the user's identity for the agent to check: the bearer token on
//! every call, or a TLS handshake with the kubeconfig's client certificate.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::TransportError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The name the TLS handshake asks for; the agent's certificate is
/// accepted whatever it names (`ForwardedAgent`).
static AGENT_NAME: std::sync::LazyLock<ServerName<'static>> =
    std::sync::LazyLock::new(|| ServerName::try_from("kubectl-ns-agent").expect("a valid DNS name"));

/// Sends the user's `authorization: Bearer …` with every call, the
/// identity the agent checks with a TokenReview.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(…)"
        } else {
            "Bearer(none)"
        })
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel to an agent, with the caller's identity attached.
pub type AgentChannel = InterceptedService<Channel, Bearer>;

/// How a port-forwarded agent learns who the user is: the bearer token on
/// every call, or, for kubeconfig users who hold a client certificate and
/// no token, a TLS handshake presenting it, to the agent's TLS port (the
/// agent port + 1) inside the port-forward.
#[derive(Clone, Debug, Default)]
pub struct AgentAuth {
    bearer: Bearer,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl AgentAuth {
    /// The port to forward to: the agent port, or the TLS one after it.
    fn port(&self, port: u16) -> Option<u16> {
        match self.tls {
            Some(_) => port.checked_add(1),
            None => Some(port),
        }
    }
}

/// The kubeconfig user's credentials, turned into a token only when an
/// agent is called (an exec plugin may take a while).
#[derive(Clone, Default)]
pub struct Credentials(Option<Arc<kube::Config>>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(…)")
    }
}

impl Credentials {
    pub fn new(config: Arc<kube::Config>) -> Credentials {
        Credentials(Some(config))
    }

    /// The bearer token kube would send the API server (a static token,
    /// `tokenFile`, an exec plugin or an OIDC id-token), obtained through
    /// kube's own auth layer so every source it supports works here too.
    /// `None` for users without one: client certificates or basic auth.
    async fn bearer(&self) -> Result<Bearer, TransportError> {
        use kube::client::ConfigExt;
        use tower::{Layer, ServiceExt};
        let Some(config) = &self.0 else {
            return Ok(Bearer::default());
        };
        let failed = |source| TransportError::Credentials { source };
        let Some(layer) = config.auth_layer().map_err(|e| failed(e.into()))? else {
            return Ok(Bearer::default());
        };
        // The layer sets the header on a request; this inner service hands
        // it back instead of sending anything.
        let capture = layer.layer(tower::service_fn(
            |req: http::Request<kube::client::Body>| async move {
                let header = req.headers().get(http::header::AUTHORIZATION).cloned();
                Ok::<_, tower::BoxError>(http::Response::new(header))
            },
        ));
        let header = capture
            .oneshot(http::Request::new(kube::client::Body::empty()))
            .await
            .map_err(failed)?
            .into_body();
        let value = header
            .filter(|h| h.as_bytes().starts_with(b"Bearer "))
            .and_then(|h| MetadataValue::try_from(h.as_bytes()).ok());
        Ok(Bearer(value))
    }

    /// What the agent will know the user by: the bearer token if the user
    /// has one (as kube sends the API server), else the client certificate.
    pub async fn agent_auth(&self) -> Result<AgentAuth, TransportError> {
        let bearer = self.bearer().await?;
        if bearer.0.is_some() {
            return Ok(AgentAuth { bearer, tls: None });
        }
        let tls = match &self.0 {
            Some(config) => client_certificate(&config.auth_info)?
                .map(|(chain, key)| tls_config(chain, key))
                .transpose()?,
            None => None,
        };
        Ok(AgentAuth { bearer, tls })
    }
}

/// The kubeconfig user's client certificate chain and key, from the
/// `-data` fields (base64) or the files named, as kubectl reads them.
fn client_certificate(
    user: &kube::config::AuthInfo,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TransportError> {
    use secrecy::ExposeSecret;
    let bad = |what: String| TransportError::ClientCertificate { what };
    let load =
        |data: Option<&str>, file: Option<&String>, what: &str| -> Result<Option<Vec<u8>>, TransportError> {
            use base64::Engine;
            match (data, file) {
                (Some(d), _) => base64::engine::general_purpose::STANDARD
                    .decode(d.trim())
                    .map(Some)
                    .map_err(|e| bad(format!("{what}-data is not base64: {e}"))),
                (None, Some(f)) => std::fs::read(f)
                    .map(Some)
                    .map_err(|e| bad(format!("cannot read {what} {f}: {e}"))),
                (None, None) => Ok(None),
            }
        };
    let cert = load(
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_ref(),
        "client-certificate",
    )?;
    let key = load(
        user.client_key_data.as_ref().map(|k| k.expose_secret()),
        user.client_key.as_ref(),
        "client-key",
    )?;
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(bad("the user has a client certificate or a key, not both".into())),
    };
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("client-certificate is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(bad("client-certificate holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| bad(format!("client-key is not a PEM private key: {e}")))?;
    Ok(Some((chain, key)))
}

fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let bad = |e: rustls::Error| TransportError::ClientCertificate { what: e.to_string() };
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ForwardedAgent(provider)))
        .with_client_auth_cert(chain, key)
        .map_err(bad)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts the agent's certificate, which nothing can vouch for (it makes
/// one at each start): the port-forward that carries this handshake
/// already goes, authenticated, through the API server and the kubelet to
/// the agent pod's own loopback. The TLS is there for the user's
/// certificate, whose proof covers this very handshake, so it cannot be
/// relayed to another agent. Handshake signatures are still checked.
#[derive(Debug)]
struct ForwardedAgent(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ForwardedAgent {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A port-forward stream, in the clear or inside TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// HTTP/2 settings for bulk output: large frames and windows, so 100 MB of
/// tcpdump output is not cut into 16 KiB frames and stalled on 64 KiB windows.
fn tuned(ep: Endpoint) -> Endpoint {
    ep.connect_timeout(CONNECT_TIMEOUT)
        .max_frame_size(1 << 20)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
}

/// Connects to `addr` (`unix:///PATH`, or `tcp://HOST:PORT` as the agent's
/// `--listen` writes it, or `http://HOST:PORT`). No token is sent: on a
/// unix socket the agent knows the caller by its uid.
pub async fn connect(addr: &str) -> Result<AgentChannel, TransportError> {
    Ok(InterceptedService::new(
        connect_channel(addr).await?,
        Bearer::default(),
    ))
}

async fn connect_channel(addr: &str) -> Result<Channel, TransportError> {
    let unreachable = |source| TransportError::Unreachable {
        addr: addr.to_owned(),
        source,
    };
    if let Some(path) = addr.strip_prefix("unix://") {
        return tuned(kns_proto::unix_endpoint(path))
            .connect()
            .await
            .map_err(unreachable);
    }
    if let Some(hostport) = addr
        .strip_prefix("tcp://")
        .or_else(|| addr.strip_prefix("http://"))
    {
        let ep = Endpoint::from_shared(format!("http://{hostport}")).map_err(|source| {
            TransportError::InvalidAddress {
                addr: addr.to_owned(),
                source,
            }
        })?;
        return tuned(ep).tcp_nodelay(true).connect().await.map_err(unreachable);
    }
    Err(TransportError::BadAddress {
        addr: addr.to_owned(),
    })
}

/// Warns once when the agent that answered is another version than this
/// plugin: flags or behaviour may differ.
pub fn warn_version_skew(meta: &tonic::metadata::MetadataMap) {
    let mine = env!("CARGO_PKG_VERSION");
    if let Some(theirs) = meta
        .get(kns_proto::AGENT_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        && theirs != mine
    {
        eprintln!("kubectl-ns: warning: the agent is version {theirs}, this kubectl-ns is {mine}");
    }
}

/// A gRPC channel to `port` of pod `ns/pod`, through the API server's
/// port-forward (a WebSocket, v4.channel.k8s.io). The agent listens on the
/// pod's 127.0.0.1 only, so nothing but a port-forward reaches it; `auth`
/// tells it who the user is.
pub async fn portforward(
    client: kube::Client,
    ns: &str,
    pod: &str,
    port: u16,
    auth: AgentAuth,
) -> Result<AgentChannel, TransportError> {
    use k8s_openapi::api::core::v1::Pod;
    let port = auth.port(port).ok_or_else(|| TransportError::ClientCertificate {
        what: format!("the agent's TLS port is --agent-port + 1, and {port} has none after it"),
    })?;
    let api: kube::Api<Pod> = kube::Api::namespaced(client, ns);
    let mut pf = api
        .portforward(pod, &[port])
        .await
        .map_err(|source| TransportError::Forward {
            what: format!("cannot open a port-forward to the agent pod {ns}/{pod}"),
            source,
        })?;
    let no_answer = |reason: String| TransportError::NoAnswer {
        ns: ns.to_owned(),
        pod: pod.to_owned(),
        port,
        reason,
    };
    let stream = pf
        .take_stream(port)
        .ok_or_else(|| no_answer("the port-forward has no stream for it".into()))?;
    let errors = pf.take_error(port);
    tokio::spawn(async move {
        let _ = pf.join().await;
    });
    let stream = secure(stream, auth.tls.as_ref()).await.map_err(no_answer)?;
    let mut stream = BufReader::with_capacity(64, stream);
    match first_bytes(&mut stream).await {
        FirstBytes::Came => {}
        FirstBytes::Alert(alert) => {
            return Err(TransportError::CertificateRefused {
                ns: ns.to_owned(),
                pod: pod.to_owned(),
                reason: alert,
            });
        }
        FirstBytes::Failed(failed) => {
            // The error channel's message comes just before the close.
            let said = match errors {
                Some(errors) => tokio::time::timeout(Duration::from_millis(500), errors)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            return Err(no_answer(said.unwrap_or(failed)));
        }
    }
    if let Some(errors) = errors {
        let pod = pod.to_owned();
        tokio::spawn(async move {
            if let Some(e) = errors.await {
                eprintln!("kubectl-ns: port-forward to {pod}: {e}");
            }
        });
    }
    one_use_channel(stream, ns, pod, auth.bearer).await
}

/// The port-forward stream in the clear, or inside TLS with the client
/// certificate; the error is why the agent did not answer.
async fn secure(stream: impl Io, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Box<dyn Io>, String> {
    Ok(match tls {
        // A closed stream or a refusal shows in the first read below.
        Some(tls) => match tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(AGENT_NAME.clone(), stream),
        )
        .await
        {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no TLS handshake within {}s", CONNECT_TIMEOUT.as_secs())),
        },
        None => Box::new(stream),
    })
}

/// What the first read through the port-forward showed.
enum FirstBytes {
    /// The agent spoke: it listens.
    Came,
    /// The agent refused the client certificate (a TLS alert).
    Alert(String),
    /// Nothing listens, or nothing answered in time: why.
    Failed(String),
}

/// The 101 only says the API server accepted the request; whether the
/// kubelet reached a listening agent shows in the first bytes: the agent's
/// HTTP/2 server speaks first (its SETTINGS frame) as soon as the forwarded
/// connection is accepted, so waiting for them costs no extra round trip. A
/// closed stream means nothing listens (the error channel says why); a
/// small buffer keeps bulk reads bypassing it. Over TLS 1.3 the agent
/// checks the client certificate after the client's last handshake
/// message, so its refusal (an alert) shows here too.
async fn first_bytes(stream: &mut BufReader<Box<dyn Io>>) -> FirstBytes {
    match tokio::time::timeout(CONNECT_TIMEOUT, stream.fill_buf()).await {
        Ok(Ok(b)) if !b.is_empty() => FirstBytes::Came,
        Ok(Err(e)) if let Some(alert) = alert(&e) => FirstBytes::Alert(alert),
        Ok(Ok(_)) => FirstBytes::Failed("the connection was closed".to_owned()),
        Ok(Err(e)) => FirstBytes::Failed(e.to_string()),
        Err(_) => FirstBytes::Failed(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// A gRPC channel over the port-forward: gRPC wants a connector; the
/// port-forward is one stream, used once.
async fn one_use_channel(
    stream: BufReader<Box<dyn Io>>,
    ns: &str,
    pod: &str,
    bearer: Bearer,
) -> Result<AgentChannel, TransportError> {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(stream)));
    let channel = tuned(Endpoint::from_static("http://agent.invalid"))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let s = slot.lock().ok().and_then(|mut g| g.take());
            async move {
                s.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the port-forward stream was already used"))
            }
        }))
        .await
        .map_err(|source| TransportError::Handshake {
            ns: ns.to_owned(),
            pod: pod.to_owned(),
            source,
        })?;
    Ok(InterceptedService::new(channel, bearer))
}

/// The TLS alert the agent sent, if that is what ended the read.
fn alert(e: &std::io::Error) -> Option<String> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(format!("TLS alert {a:?}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bearer_for(user: &str) -> Option<String> {
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
             users:\n- name: u\n  user:\n{user}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
        );
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let b = Credentials::new(Arc::new(config))
            .agent_auth()
            .await
            .unwrap()
            .bearer;
        b.0.map(|v| v.to_str().unwrap().to_owned())
    }

    #[tokio::test]
    async fn the_token_is_the_one_kubectl_would_send() {
        let dir = std::env::temp_dir().join(format!("kns-bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file").unwrap();
        let exec = dir.join("plugin.sh");
        std::fs::write(
            &exec,
            "#!/bin/sh\necho '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{\"token\":\"from-exec\"}}'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exec, std::fs::Permissions::from_mode(0o755)).unwrap();

        assert_eq!(
            bearer_for("    token: static").await.as_deref(),
            Some("Bearer static")
        );
        assert_eq!(
            bearer_for(&format!("    tokenFile: {}", file.display()))
                .await
                .as_deref(),
            Some("Bearer from-file")
        );
        assert_eq!(
            bearer_for(&format!(
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never",
                exec.display()
            ))
            .await
            .as_deref(),
            Some("Bearer from-exec")
        );
        // Basic auth is not a bearer token: nothing is sent.
        assert_eq!(bearer_for("    username: a\n    password: b").await, None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
