//! Who is calling: a bearer token checked with a TokenReview (as the
//! kubelet's `--authentication-token-webhook` does), a client certificate
//! checked in the TLS handshake (`clientcert`), or, on a unix socket, the
//! peer's credentials (SO_PEERCRED).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::access::clientcert::ClientCerts;
use crate::access::identity::{Caller, Identity, Method};
use crate::access::kubeclient::{KubeClient, KubeError};

/// How long a positive answer (a token's identity, an allowed rule) is
/// reused. Short, so a revoked token or binding stops working soon; never
/// applied to negative answers.
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// Answers kept at most: a flood of distinct tokens cannot grow the agent.
pub const CACHE_SIZE: usize = 1024;

/// The caller's verified identity and how it was established: a unix
/// peer by its uid, a token by the API server's TokenReview (`tokens`), a
/// certificate against the cluster's client CA (`certs`); with `skip`
/// (`--insecure-skip-authz`) a remote caller is not checked at all.
pub async fn identify(
    caller: &Caller,
    tokens: &Authenticator,
    certs: &ClientCerts,
    skip: bool,
) -> Result<(Identity, Method), AuthnError> {
    match caller {
        Caller::Unix(Some(uid)) => Ok((Identity::unix(*uid), Method::Peercred)),
        Caller::Unix(None) => Err(AuthnError::NoPeercred),
        _ if skip => Ok((
            Identity {
                username: "unverified".into(),
                uid: String::new(),
                groups: Vec::new(),
                extra: Default::default(),
            },
            Method::Skip,
        )),
        Caller::Remote(None) => Err(AuthnError::NoToken),
        Caller::Remote(Some(token)) => Ok((tokens.token(token).await?, Method::Token)),
        Caller::Certificate(Ok(chain)) => certs
            .check(chain)
            .await
            .map(|who| (who, Method::X509))
            .map_err(AuthnError::NoCertificate),
        Caller::Certificate(Err(why)) => Err(AuthnError::NoCertificate(why.clone())),
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
    #[error("the API server rejected the token{}", if .error.is_empty() { String::new() } else { format!(": {}", .error) })]
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

/// Every field may be absent: the API server leaves `authenticated` out
/// when it is false (`omitempty`), as for an invalid token.
#[derive(Deserialize, Default)]
struct TokenReviewStatus {
    #[serde(default)]
    authenticated: bool,
    user: Option<Identity>,
    #[serde(default)]
    error: String,
}

impl TokenReviewStatus {
    /// The caller the review vouches for, or the API server's reason for
    /// vouching for nobody.
    fn identity(self) -> Result<Identity, AuthnError> {
        match self.user {
            Some(user) if self.authenticated && !user.username.is_empty() => Ok(user),
            _ => Err(AuthnError::Rejected { error: self.error }),
        }
    }
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
        let user = answer.status.identity()?;
        self.cache.put(token.to_owned(), user.clone());
        Ok(user)
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
    }

    /// A real API server's answers (v1.32), recorded in tests/fixtures.
    fn recorded(json: &str) -> Result<Identity, AuthnError> {
        serde_json::from_str::<TokenReviewAnswer>(json)
            .expect("the recorded TokenReview parses")
            .status
            .identity()
    }

    #[test]
    fn a_valid_tokens_review_names_the_user_with_all_the_api_server_said() {
        let user = recorded(include_str!(
            "../../../tests/fixtures/kube-v1.32/tokenreview-valid.json"
        ))
        .unwrap();
        assert_eq!(user.username, "system:serviceaccount:fx:reader");
        assert_eq!(user.uid, "a40e91dd-b63e-49fe-b0bc-f1b9d03fabd8");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:fx",
                "system:authenticated"
            ]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/credential-id"],
            ["JTI=23bee4fc-2801-4fcd-b00f-2b1530cdb278"]
        );
    }

    #[test]
    fn an_invalid_tokens_review_is_a_rejection_with_the_api_servers_words() {
        // `user: {}` and no `authenticated`: what v1.32 really sends.
        let e = recorded(include_str!(
            "../../../tests/fixtures/kube-v1.32/tokenreview-invalid.json"
        ))
        .unwrap_err();
        assert!(
            matches!(&e, AuthnError::Rejected { error } if error == "invalid bearer token"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "the API server rejected the token: invalid bearer token"
        );
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
