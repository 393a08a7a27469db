//! Who a caller is: what a request says about it before anything is
//! checked ([`Caller`], with a TLS peer's [`CertPeer`]), and the verified
//! [`Identity`] with the [`Method`] that established it. Shared by the
//! token, certificate and unix-peer checks, the authorizer and the audit
//! trail.

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tonic::transport::server::UdsConnectInfo;

/// How the identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A bearer token the API server vouched for (TokenReview).
    Token,
    /// A client certificate signed by the cluster's client CA.
    X509,
    /// The uid of the process on the other end of the unix socket.
    Peercred,
    /// `--insecure-skip-authz`: nobody was asked.
    Skip,
}

impl Method {
    /// Its name, as the audit trail spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Token => "token",
            Method::X509 => "x509",
            Method::Peercred => "peercred",
            Method::Skip => "skip",
        }
    }
}

/// A verified caller, as the API server's `UserInfo` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// Empty only in a TokenReview that authenticated nobody: the API
    /// server answers an invalid token with `user: {}`.
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// A local process by its uid (direct mode).
    pub fn unix(uid: u32) -> Identity {
        Identity {
            username: format!("unix:uid:{uid}"),
            uid: uid.to_string(),
            groups: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// What a request says about its caller, before anything is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A unix socket peer; `None` when the kernel gave no credentials.
    Unix(Option<u32>),
    /// A TCP peer (the port-forward) and the bearer token it sent, if any.
    Remote(Option<String>),
    /// A TLS peer: the certificate chain it presented, or why there is
    /// none.
    Certificate(Result<Vec<CertificateDer<'static>>, String>),
}

impl Caller {
    pub fn of<T>(req: &tonic::Request<T>) -> Caller {
        if let Some(info) = req.extensions().get::<UdsConnectInfo>() {
            return Caller::Unix(info.peer_cred.map(|c| c.uid()));
        }
        if let Some(CertPeer(peer)) = req.extensions().get::<CertPeer>() {
            return Caller::Certificate(peer.clone());
        }
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.strip_prefix("Bearer ").unwrap_or("").trim().to_owned());
        Caller::Remote(token)
    }
}

/// Who a TLS connection's client is, as far as its certificate says:
/// the certificate chain it presented (its key proven in the handshake),
/// checked against the CA at each call, or why there is none.
#[derive(Debug, Clone)]
pub struct CertPeer(pub Result<Vec<CertificateDer<'static>>, String>);
