//! Callers who hold a client certificate instead of a token: TLS carried
//! inside the port-forward stream, the certificate checked against the
//! cluster's client CA as extension API servers check it (the
//! `client-ca-file` of `kube-system/extension-apiserver-authentication`),
//! and the name read from it as the API server reads it (CN the user, each
//! O a group).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::access::identity::{CertPeer, Identity};
use crate::access::kubeclient::KubeClient;

/// Where the API server publishes the CA that signs client certificates.
pub const CLIENT_CA_CONFIGMAP: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";
/// The CA is read again this often, so a rotated one is picked up.
const CA_FRESH: Duration = Duration::from_secs(60);
/// After a failed read, the next handshake tries again no sooner than this:
/// a flood of connections does not become a flood of GETs.
const CA_RETRY: Duration = Duration::from_secs(5);
/// A handshake that takes longer is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Told to callers when there is no CA to check them with; the details
/// (the API server's address, its answer) go to the agent's log only.
const NO_CA: &str = "the agent cannot check client certificates now: it has no usable client CA from the cluster \
                     (kube-system/extension-apiserver-authentication); the agent's log says why";
/// How long a CA read before is trusted while the API server cannot be
/// reached.
const CA_KEPT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ClientCaError {
    #[error("cannot read the cluster's client CA (kube-system/extension-apiserver-authentication): {0}")]
    Read(#[source] crate::access::kubeclient::KubeError),
    #[error(
        "kube-system/extension-apiserver-authentication has no client-ca-file: the API server does not sign client certificates"
    )]
    Missing,
    #[error(
        "the client-ca-file of kube-system/extension-apiserver-authentication holds no usable certificate: {0}"
    )]
    Unusable(String),
    #[error("cannot make the agent's TLS certificate: {0}")]
    ServerCert(String),
}

/// Accepts TLS connections, verifying client certificates against the
/// cluster's current client CA.
pub struct ClientCerts {
    client: Option<KubeClient>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    loaded: tokio::sync::Mutex<Loaded>,
}

impl std::fmt::Debug for ClientCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCerts").finish_non_exhaustive()
    }
}

struct Loaded {
    at: Option<Instant>,
    acceptor: TlsAcceptor,
    /// Checks a presented certificate against the CA, at each call.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// When `verifier` was read.
    verified_at: Option<Instant>,
    /// Why the last read of the CA failed.
    error: Option<String>,
}

impl ClientCerts {
    /// `client`: the API server to read the CA from (`None` outside a
    /// cluster: certificates are then refused, saying so). The agent's own
    /// certificate is made here, fresh each start: the plugin reaches it
    /// through the API server's authenticated port-forward, so nothing
    /// else vouches for it (docs/SECURITY.md).
    pub fn new(client: Option<KubeClient>) -> Result<ClientCerts, ClientCaError> {
        let made = rcgen::generate_simple_self_signed(vec!["kubectl-ns-agent".to_owned()])
            .map_err(|e| ClientCaError::ServerCert(e.to_string()))?;
        let chain = vec![made.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let none = "no API server to read the cluster's client CA from (--kube-api)".to_owned();
        let acceptor = acceptor(&chain, &key, None).map_err(ClientCaError::ServerCert)?;
        Ok(ClientCerts {
            client,
            chain,
            key,
            loaded: tokio::sync::Mutex::new(Loaded {
                at: None,
                acceptor,
                verifier: None,
                verified_at: None,
                error: Some(none),
            }),
        })
    }

    /// The acceptor and verifier to use now, reading the CA again when it
    /// is stale; without a verifier, why there is none.
    async fn current(&self) -> (TlsAcceptor, Result<Arc<dyn ClientCertVerifier>, String>) {
        let mut loaded = self.loaded.lock().await;
        let due = match loaded.at {
            None => true,
            Some(at) if loaded.error.is_some() => at.elapsed() >= CA_RETRY,
            Some(at) => at.elapsed() >= CA_FRESH,
        };
        if due && let Some(client) = &self.client {
            loaded.at = Some(Instant::now());
            match self.read_ca(client).await {
                Ok((acceptor, verifier)) => {
                    if loaded.error.is_some() {
                        tracing::info!("client certificates are checked against the cluster's client CA");
                    }
                    loaded.acceptor = acceptor;
                    loaded.verifier = Some(verifier);
                    loaded.verified_at = Some(Instant::now());
                    loaded.error = None;
                }
                Err(e) => {
                    // The API server unreachable: the CA read before stays,
                    // for a while. Its answer that there is none, or none
                    // usable, ends it at once: that is how an admin stops
                    // certificates.
                    let keep = matches!(e, ClientCaError::Read(_))
                        && loaded.verified_at.is_some_and(|t| t.elapsed() < CA_KEPT);
                    if !keep {
                        loaded.verifier = None;
                    }
                    if loaded.error.as_deref() != Some(&e.to_string()) {
                        tracing::warn!(error = %e, keeping_previous = keep, "client certificates");
                    }
                    loaded.error = Some(e.to_string());
                }
            }
        }
        let verifier = loaded
            .verifier
            .clone()
            .ok_or_else(|| loaded.error.clone().unwrap_or_default());
        (loaded.acceptor.clone(), verifier)
    }

    async fn read_ca(
        &self,
        client: &KubeClient,
    ) -> Result<(TlsAcceptor, Arc<dyn ClientCertVerifier>), ClientCaError> {
        #[derive(serde::Deserialize)]
        struct ConfigMap {
            #[serde(default)]
            data: std::collections::BTreeMap<String, String>,
        }
        let cm: ConfigMap = client
            .get(CLIENT_CA_CONFIGMAP)
            .await
            .map_err(ClientCaError::Read)?;
        let pem = cm.data.get("client-ca-file").ok_or(ClientCaError::Missing)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(pem)?), provider)
            .build()
            .map_err(|e| ClientCaError::Unusable(e.to_string()))?;
        let acceptor =
            acceptor(&self.chain, &self.key, Some(verifier.clone())).map_err(ClientCaError::Unusable)?;
        Ok((acceptor, verifier))
    }

    /// Completes the TLS handshake on `tcp`, keeping the chain the client
    /// presented; all within [`HANDSHAKE_TIMEOUT`], the CA's read included.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<CertConn> {
        let handshake = async {
            let (acceptor, verifier) = self.current().await;
            Ok::<_, std::io::Error>((acceptor.accept(tcp).await?, verifier.is_ok()))
        };
        let (tls, asked) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let peer = match tls.get_ref().1.peer_certificates() {
            Some(chain) if !chain.is_empty() => Ok(chain.iter().map(|c| c.clone().into_owned()).collect()),
            // Without a CA none was asked for.
            _ if !asked => Err(NO_CA.to_owned()),
            _ => Err("the TLS connection carried no client certificate".to_owned()),
        };
        Ok(CertConn {
            tls,
            peer: CertPeer(peer),
        })
    }

    /// The user `chain` names, checked now against the current CA, as the
    /// API server checks a certificate at each request: one that expired
    /// or whose CA was replaced since the connection was made no longer
    /// counts.
    pub async fn check(&self, chain: &[CertificateDer<'static>]) -> Result<Identity, String> {
        let (_, verifier) = self.current().await;
        let verifier = verifier.map_err(|_| NO_CA.to_owned())?;
        verify(verifier.as_ref(), chain, UnixTime::now())
    }
}

/// Checks `chain` (leaf first) against `verifier` at `now` and names its
/// user.
fn verify(
    verifier: &dyn ClientCertVerifier,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<Identity, String> {
    let [leaf, intermediates @ ..] = chain else {
        return Err("the TLS connection carried no client certificate".to_owned());
    };
    verifier.verify_client_cert(leaf, intermediates, now).map_err(|e| {
        format!(
            "the client certificate is not one the cluster's client CA signed for client authentication, or not \
             valid now (client-ca-file in kube-system/extension-apiserver-authentication): {e}"
        )
    })?;
    identity(leaf)
}

fn roots(pem: &str) -> Result<rustls::RootCertStore, ClientCaError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientCaError::Unusable(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ClientCaError::Unusable(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientCaError::Unusable("no PEM certificate".into()));
    }
    Ok(roots)
}

/// With a verifier, a client certificate is asked for but optional, and
/// its check against the CA is left to `accept`, so that a refusal reaches
/// the caller as an answer (and the audit trail) instead of a TLS alert;
/// the handshake still proves the client holds the certificate's key.
fn acceptor(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(Arc::new(ProofOfKey(v))),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain.to_vec(), key.clone_key())
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The CA's verifier for everything but the certificate's chain, which
/// `ClientCerts::accept` checks once the handshake is done.
#[derive(Debug)]
struct ProofOfKey(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ProofOfKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The user a verified certificate names, as the API server's x509
/// authenticator reads it: the subject's CN is the username, each O a
/// group, every such user is in `system:authenticated`, and the
/// certificate's SHA-256 is its credential ID (for the audit trail).
pub fn identity(der: &CertificateDer<'_>) -> Result<Identity, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
    let subject = cert.subject();
    // The API server reads the last CN where a subject has several; one
    // that another reader could take for someone else is refused.
    let names: Vec<_> = subject.iter_common_name().collect();
    let [cn] = names[..] else {
        return Err(format!(
            "the client certificate's subject has {} common names (CN); exactly one names the user",
            names.len()
        ));
    };
    let username = cn
        .as_str()
        .ok()
        .filter(|cn| !cn.is_empty())
        .ok_or("the client certificate's common name (CN), which names the user, is empty or not text")?
        .to_owned();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    groups.push("system:authenticated".to_owned());
    let fingerprint: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Identity {
        username,
        uid: String::new(),
        groups,
        extra: [(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("X509SHA256={fingerprint}")],
        )]
        .into(),
    })
}

/// A TLS connection and who its client is.
pub struct CertConn {
    tls: TlsStream<TcpStream>,
    peer: CertPeer,
}

impl tonic::transport::server::Connected for CertConn {
    type ConnectInfo = CertPeer;
    fn connect_info(&self) -> CertPeer {
        self.peer.clone()
    }
}

impl AsyncRead for CertConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for CertConn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(subject: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in subject {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_name_is_read_as_the_api_server_reads_it() {
        use rcgen::DnType::{CommonName, OrganizationName};
        // (rcgen keeps one value per attribute type: one O here.)
        let der = issued(&[(CommonName, "carol"), (OrganizationName, "devs")]);
        let id = identity(&der).unwrap();
        assert_eq!(id.username, "carol");
        assert_eq!(id.groups, ["devs", "system:authenticated"]);
        let cred = &id.extra["authentication.kubernetes.io/credential-id"][0];
        assert!(cred.starts_with("X509SHA256=") && cred.len() == 11 + 64, "{cred}");

        let e = identity(&issued(&[(OrganizationName, "devs")])).unwrap_err();
        assert!(e.contains("0 common names"), "{e}");
        // Two CNs: the API server would take the last, a naive reader the
        // first.
        let cn = rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]);
        let e = identity(&issued(&[(CommonName, "victim"), (cn, "self")])).unwrap_err();
        assert!(e.contains("2 common names"), "{e}");
    }

    /// What the API server's x509 authenticator refuses, the agent refuses:
    /// another CA's, expired, not for client authentication, the CA itself.
    #[test]
    fn only_a_current_client_certificate_of_the_ca_counts() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "client-ca");
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let leaf = |edit: &dyn Fn(&mut rcgen::CertificateParams)| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CommonName, "carol");
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
            edit(&mut p);
            p.signed_by(&key, &issuer).unwrap().der().clone()
        };
        let now = UnixTime::now();
        let check = |der: CertificateDer<'static>| verify(verifier.as_ref(), &[der], now);
        assert_eq!(check(leaf(&|_| {})).unwrap().username, "carol");
        let expired = leaf(&|p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        let server_only = leaf(&|p| p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth]);
        let foreign = issued(&[(rcgen::DnType::CommonName, "carol")]);
        for (what, der) in [
            ("expired", expired),
            ("serverAuth only", server_only),
            ("the CA itself", ca_cert.der().clone()),
            ("another CA's", foreign),
        ] {
            let e = check(der).expect_err(what);
            assert!(
                e.contains("not one the cluster's client CA signed"),
                "{what}: {e}"
            );
        }
        assert!(verify(verifier.as_ref(), &[], now).is_err());
    }

    #[test]
    fn a_ca_bundle_without_certificates_is_refused() {
        assert!(matches!(roots("not pem"), Err(ClientCaError::Unusable(_))));
    }
}
