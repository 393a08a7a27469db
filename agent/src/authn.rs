//! Who is calling: a bearer token checked with a TokenReview (as the
//! kubelet's `--authentication-token-webhook` does), a client certificate
//! checked in the TLS handshake (`clientcert`), or, on a unix socket, the
//! peer's credentials (SO_PEERCRED).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tonic::transport::server::UdsConnectInfo;

use crate::clientcert::CertPeer;
use crate::kubeclient::{KubeClient, KubeError};

/// How long a positive answer (a token's identity, an allowed rule) is
/// reused. Short, so a revoked token or binding stops working soon; never
/// applied to negative answers.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Answers kept at most: a flood of distinct tokens cannot grow the agent.
pub const CACHE_SIZE: usize = 1024;

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

/// A verified caller, as the API server's `UserInfo` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
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
    Certificate(Result<Vec<rustls::pki_types::CertificateDer<'static>>, String>),
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

#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error(
        "no bearer token: callers over TCP (the API server's port-forward) must send their Kubernetes \
         token, as kubectl-ns does from the kubeconfig"
    )]
    NoToken,
    #[error("the authorization header is not `Bearer TOKEN`")]
    Malformed,
    #[error("the API server did not accept the token{}", if .error.is_empty() { String::new() } else { format!(": {}", .error) })]
    Rejected { error: String },
    #[error("{0}")]
    NoCertificate(String),
    #[error("the unix socket gave no peer credentials")]
    NoPeercred,
    #[error("cannot check the token with the API server (TokenReview): {0}")]
    Review(#[source] KubeError),
}

/// A bounded map whose entries expire; for positive answers only.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub fn new() -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, k: &K) -> Option<V> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(k)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, k: K, v: V) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_SIZE {
            map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_SIZE {
                map.clear();
            }
        }
        map.insert(k, (Instant::now(), v));
    }
}

impl<K: Hash + Eq, V: Clone> Default for TtlCache<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    spec: TokenReviewSpec<'a>,
}

#[derive(Serialize)]
struct TokenReviewSpec<'a> {
    token: &'a str,
}

#[derive(Deserialize)]
struct TokenReviewAnswer {
    #[serde(default)]
    status: TokenReviewStatus,
}

#[derive(Deserialize, Default)]
struct TokenReviewStatus {
    #[serde(default)]
    authenticated: bool,
    user: Option<Identity>,
    #[serde(default)]
    error: String,
}

/// Checks bearer tokens with the API server.
#[derive(Debug)]
pub struct Authenticator {
    /// `None` outside a cluster without `--kube-api`: every token is then
    /// refused, saying so.
    client: Option<KubeClient>,
    cache: TtlCache<String, Identity>,
}

impl Authenticator {
    pub fn new(client: Option<KubeClient>) -> Authenticator {
        Authenticator {
            client,
            cache: TtlCache::new(),
        }
    }

    /// The identity the API server gives `token`.
    pub async fn token(&self, token: &str) -> Result<Identity, AuthnError> {
        if token.is_empty() {
            return Err(AuthnError::Malformed);
        }
        if let Some(id) = self.cache.get(&token.to_owned()) {
            return Ok(id);
        }
        let client = self
            .client
            .as_ref()
            .ok_or(AuthnError::Review(KubeError::NotConfigured))?;
        let review = TokenReview {
            api_version: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: TokenReviewSpec { token },
        };
        let answer: TokenReviewAnswer = client
            .post("/apis/authentication.k8s.io/v1/tokenreviews", &review)
            .await
            .map_err(AuthnError::Review)?;
        match (answer.status.authenticated, answer.status.user) {
            (true, Some(user)) if !user.username.is_empty() => {
                self.cache.put(token.to_owned(), user.clone());
                Ok(user)
            }
            _ => Err(AuthnError::Rejected {
                error: answer.status.error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_review_shapes_are_the_apis() {
        let body = serde_json::to_value(TokenReview {
            api_version: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: TokenReviewSpec { token: "t" },
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "t"}})
        );
        let answer: TokenReviewAnswer = serde_json::from_str(
            r#"{"kind":"TokenReview","status":{"authenticated":true,"user":{"username":"alice","uid":"u1",
                "groups":["devs","system:authenticated"],"extra":{"scopes":["a"]}}}}"#,
        )
        .unwrap();
        let user = answer.status.user.unwrap();
        assert_eq!(user.username, "alice");
        assert_eq!(user.groups, ["devs", "system:authenticated"]);
        assert_eq!(user.extra["scopes"], ["a"]);
        let denied: TokenReviewAnswer =
            serde_json::from_str(r#"{"status":{"authenticated":false,"error":"token expired"}}"#).unwrap();
        assert!(!denied.status.authenticated);
    }

    #[test]
    fn cache_is_bounded() {
        let c = TtlCache::new();
        for i in 0..CACHE_SIZE + 10 {
            c.put(i, i);
        }
        assert!(c.entries.lock().unwrap().len() <= CACHE_SIZE);
        assert_eq!(c.get(&(CACHE_SIZE + 9)), Some(CACHE_SIZE + 9));
    }

    #[tokio::test]
    async fn without_an_api_server_tokens_are_refused_with_the_reason() {
        let a = Authenticator::new(None);
        let e = a.token("x").await.unwrap_err();
        assert!(e.to_string().contains("--kube-api"), "{e}");
    }
}
