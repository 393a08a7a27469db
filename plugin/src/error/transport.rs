//! The transport's errors: here, beside their wording, so that `error`
//! imports nothing from the layers that return its failures.

/// What can go wrong on the way to an agent (`agent::transport`); worded
/// for the user by `Failure::Transport` (its wording is in `wording`).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("--agent {addr}: expected unix:///PATH or tcp://HOST:PORT (also http://HOST:PORT)")]
    BadAddress { addr: String },
    #[error("--agent {addr}: not a valid address")]
    InvalidAddress {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot reach the agent at {addr}")]
    Unreachable {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The API server refused or failed the port-forward request.
    #[error("{what}")]
    Forward {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The port-forward opened, but nothing answered on the agent's port.
    #[error("the port-forward to the agent pod {ns}/{pod} reached nothing on port {port}: {reason}")]
    NoAnswer {
        ns: String,
        pod: String,
        port: u16,
        reason: String,
    },
    /// The kubeconfig's credentials could not be turned into a token.
    #[error("cannot get a bearer token for the agent from the kubeconfig's user")]
    Credentials {
        #[source]
        source: tower::BoxError,
    },
    /// The kubeconfig's client certificate or key cannot be used.
    #[error("cannot use the kubeconfig user's client certificate for the agent: {what}")]
    ClientCertificate { what: String },
    /// The agent's TLS listener refused the client certificate.
    #[error("the agent pod {ns}/{pod} refused the client certificate: {reason}")]
    CertificateRefused { ns: String, pod: String, reason: String },
    #[error("cannot reach the agent {ns}/{pod} through the port-forward")]
    Handshake {
        ns: String,
        pod: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl TransportError {
    /// Whether the agent pod named is gone or not serving, so that a fresh
    /// lookup of the node's agent may find a better one.
    pub fn agent_gone(&self) -> bool {
        match self {
            TransportError::Forward {
                source: kube::Error::Api(s),
                ..
            } => s.code == 404,
            TransportError::NoAnswer { .. } => true,
            _ => false,
        }
    }
}
