//! The agent's own calls to the API server (TokenReview,
//! SubjectAccessReview, the cluster's client CA): one JSON request at a
//! time over HTTPS, with its ServiceAccount's token. Answers are cached by the callers, so a
//! connection per call is cheap enough and keeps this small.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// Where a pod's ServiceAccount credentials are mounted.
pub const SERVICEACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How long one call may take, connection included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "the agent knows no API server to check identities with: it runs outside a cluster \
         (KUBERNETES_SERVICE_HOST is unset) and --kube-api (KNS_KUBE_API) is not given"
    )]
    NotConfigured,
    #[error("API server address `{url}`: expected https://HOST[:PORT]")]
    BadUrl { url: String },
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCa { path: PathBuf },
    #[error("cannot reach the API server at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server at {addr} did not answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("the API server at {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the API server answered {method} {path} with {code}: {message}")]
    Status {
        method: http::Method,
        path: String,
        code: u16,
        message: String,
    },
    #[error("the API server's answer to {path} is not the expected JSON: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Where the API server is and how to trust and talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// `https://HOST:PORT`.
    pub url: String,
    /// PEM bundle of the CAs the API server's certificate must chain to.
    pub ca: PathBuf,
    /// The agent's own bearer token, read again for every call: projected
    /// ServiceAccount tokens are rotated by the kubelet.
    pub token_file: PathBuf,
}

impl KubeConfig {
    /// `url` if given, else the in-cluster address from the environment the
    /// kubelet sets (`KUBERNETES_SERVICE_HOST`/`_PORT`); the CA and token
    /// default to the pod's ServiceAccount mount. `None` outside a cluster.
    pub fn resolve(
        url: Option<String>,
        ca: Option<PathBuf>,
        token_file: Option<PathBuf>,
    ) -> Option<KubeConfig> {
        let url = url.or_else(|| {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            Some(format!("https://{host}:{port}"))
        })?;
        let sa = Path::new(SERVICEACCOUNT_DIR);
        Some(KubeConfig {
            url,
            ca: ca.unwrap_or_else(|| sa.join("ca.crt")),
            token_file: token_file.unwrap_or_else(|| sa.join("token")),
        })
    }
}

/// A client for the API server.
#[derive(Clone)]
pub struct KubeClient {
    /// `HOST:PORT`, to connect to and to name in errors.
    addr: String,
    host: String,
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    token_file: PathBuf,
}

impl std::fmt::Debug for KubeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl KubeClient {
    /// Checks the address and loads the CA; the token is read per call.
    pub fn new(config: &KubeConfig) -> Result<KubeClient, KubeError> {
        let bad = || KubeError::BadUrl {
            url: config.url.clone(),
        };
        let uri: http::Uri = config.url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?.to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let server_name = ServerName::try_from(bare).map_err(|_| bad())?;
        let read = |source| KubeError::Read {
            what: "API server CA",
            path: config.ca.clone(),
            source,
        };
        let pem = std::fs::read(&config.ca).map_err(read)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(KubeError::NoCa {
                path: config.ca.clone(),
            });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| KubeError::Http {
                addr: config.url.clone(),
                source: Box::new(e),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(KubeClient {
            addr: format!("{host}:{port}"),
            host,
            server_name,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            token_file: config.token_file.clone(),
        })
    }

    /// POSTs `body` as JSON to `path` and decodes the 2xx answer.
    pub async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, KubeError> {
        let body = serde_json::to_vec(body).expect("review objects serialize");
        self.request(http::Method::POST, path, Some(body)).await
    }

    /// GETs `path` and decodes the 2xx answer.
    pub async fn get<R: serde::de::DeserializeOwned>(&self, path: &str) -> Result<R, KubeError> {
        self.request(http::Method::GET, path, None).await
    }

    async fn request<R: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<R, KubeError> {
        let call = self.call(method.clone(), path, body);
        let (code, bytes) =
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .map_err(|_| KubeError::Timeout {
                    addr: self.addr.clone(),
                })??;
        if !(200..300).contains(&code) {
            return Err(KubeError::Status {
                method,
                path: path.to_owned(),
                code,
                message: status_message(&bytes),
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| KubeError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), KubeError> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|source| KubeError::Read {
            what: "agent's ServiceAccount token",
            path: self.token_file.clone(),
            source,
        })?;
        let connect = |source| KubeError::Connect {
            addr: self.addr.clone(),
            source,
        };
        let http = |e: hyper::Error| KubeError::Http {
            addr: self.addr.clone(),
            source: Box::new(e),
        };
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(connect)?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(connect)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.host)
            .header(http::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| KubeError::Http {
                addr: self.addr.clone(),
                source: Box::new(e),
            })?;
        let resp = send.send_request(req).await.map_err(http)?;
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(http)?.to_bytes();
        Ok((code, bytes))
    }
}

/// What a failed call's body says: a `metav1.Status` names the reason
/// (RBAC's wording for a 403); anything else is shown as it came.
fn status_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Status {
        message: String,
    }
    serde_json::from_slice::<Status>(body)
        .map(|s| s.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_address_wins_and_defaults_are_the_serviceaccount_mount() {
        let c = KubeConfig::resolve(Some("https://10.0.0.1:6443".into()), None, None).unwrap();
        assert_eq!(c.url, "https://10.0.0.1:6443");
        assert_eq!(c.ca, Path::new(SERVICEACCOUNT_DIR).join("ca.crt"));
        assert_eq!(c.token_file, Path::new(SERVICEACCOUNT_DIR).join("token"));
    }

    #[test]
    fn rejects_plain_http_and_missing_ca() {
        let config = |url: &str| KubeConfig {
            url: url.into(),
            ca: "/nonexistent/ca.crt".into(),
            token_file: "/nonexistent/token".into(),
        };
        assert!(matches!(
            KubeClient::new(&config("http://10.0.0.1")),
            Err(KubeError::BadUrl { .. })
        ));
        assert!(matches!(
            KubeClient::new(&config("https://10.0.0.1")),
            Err(KubeError::Read { .. })
        ));
    }

    #[test]
    fn a_failed_calls_status_is_told_by_its_message() {
        // The API server's own bodies (v1.32), recorded in tests/fixtures.
        for (json, message) in [
            (
                include_str!("../../../tests/fixtures/kube-v1.32/status-401.json"),
                "Unauthorized",
            ),
            (
                include_str!("../../../tests/fixtures/kube-v1.32/status-403-get-pod.json"),
                "pods \"web\" is forbidden: User \"system:serviceaccount:fx:reader\" cannot get resource \"pods\" in API group \"\" in the namespace \"fx\"",
            ),
            (
                include_str!("../../../tests/fixtures/kube-v1.32/status-404-pod.json"),
                "pods \"nope\" not found",
            ),
        ] {
            assert_eq!(status_message(json.as_bytes()), message);
        }
        assert_eq!(status_message(b"404 page not found"), "404 page not found");
    }
}
