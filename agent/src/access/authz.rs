//! What a verified caller may do, decided by the API server with a
//! SubjectAccessReview (as the kubelet's `--authorization-mode=Webhook`
//! does), so RBAC stays the one place rights are granted:
//!
//! | request | target | rule |
//! |---|---|---|
//! | exec | a pod's container | `create pods/exec` on that pod (what `kubectl exec` needs) |
//! | exec | the node, a host PID, a container of no pod | `create nodes/exec` in API group `kubectl-ns.io` on the node |
//! | inspect (`ls`) | a pod's container | `get pods` on that pod |
//! | inspect (`ls`) | the node | `get nodes` on that node |
//! | inspect (`ls`) | a host PID, a container of no pod | the node exec right |
//! | list (`ls node/NODE`, `audit`) | the node's containers | `list pods` in all namespaces |
//! | sessions (`sessions`) | another user's sessions | `list nodes/sessions` in API group `kubectl-ns.io` on the node |
//! | kill (`sessions kill`) | another user's session | `delete nodes/sessions` in API group `kubectl-ns.io` on the node |
//! | replay | a session recording on the node | `get nodes/recordings` in API group `kubectl-ns.io` on the node |
//!
//! A caller's own sessions need no right to be seen or ended.
//!
//! The pod is the one the container runtime labels the container with
//! (`io.kubernetes.pod.*`, set by the kubelet), never the client's claim.

use serde::{Deserialize, Serialize};

use crate::access::authn::{AuthnError, TtlCache};
use crate::access::identity::{Caller, Identity, Method};
use crate::access::kubeclient::{KubeClient, KubeError};

/// The API group of the agent's virtual `nodes/exec` and
/// `nodes/recordings` resources.
pub const GROUP: &str = "kubectl-ns.io";
/// The ClusterRole in `manifests/` that grants the node right.
pub const NODE_ADMIN_ROLE: &str = "kubectl-ns-node-admin";
/// The ClusterRole in `manifests/` that grants seeing and ending anyone's
/// sessions.
pub const SESSION_ADMIN_ROLE: &str = "kubectl-ns-session-admin";

/// A right, in the shape of a SubjectAccessReview's `resourceAttributes`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub namespace: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub subresource: String,
    pub name: String,
}

impl Rule {
    fn new(verb: &str, group: &str, resource: &str, subresource: &str, namespace: &str, name: &str) -> Rule {
        Rule {
            namespace: namespace.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            name: name.into(),
        }
    }

    pub fn pod_exec(namespace: &str, pod: &str) -> Rule {
        Rule::new("create", "", "pods", "exec", namespace, pod)
    }

    pub fn pod_get(namespace: &str, pod: &str) -> Rule {
        Rule::new("get", "", "pods", "", namespace, pod)
    }

    pub fn node_exec(node: &str) -> Rule {
        Rule::new("create", GROUP, "nodes", "exec", "", node)
    }

    /// Reading the node's session recordings: a right of its own, as what
    /// they show (another user's sessions) is neither running a tool nor
    /// reading an API object.
    pub fn node_recordings(node: &str) -> Rule {
        Rule::new("get", GROUP, "nodes", "recordings", "", node)
    }

    pub fn node_get(node: &str) -> Rule {
        Rule::new("get", "", "nodes", "", "", node)
    }

    /// Seeing (`list`) or ending (`delete`) other users' sessions on the
    /// node.
    pub fn node_sessions(verb: &str, node: &str) -> Rule {
        Rule::new(verb, GROUP, "nodes", "sessions", "", node)
    }

    /// Every pod, as `kubectl get pods -A` needs.
    pub fn pods_list() -> Rule {
        Rule::new("list", "", "pods", "", "", "")
    }

    /// Which of the rules above this is, without its namespace and name:
    /// a closed set of names, for a metric's label.
    pub fn short_name(&self) -> &'static str {
        match (
            self.verb.as_str(),
            self.resource.as_str(),
            self.subresource.as_str(),
        ) {
            ("create", "pods", "exec") => "podsExec",
            ("get", "pods", "") => "podsGet",
            ("list", "pods", "") => "podsList",
            ("create", "nodes", "exec") => "nodesExec",
            ("get", "nodes", "") => "nodesGet",
            ("get", "nodes", "recordings") => "nodesRecordings",
            ("list", "nodes", "sessions") => "nodesSessionsList",
            ("delete", "nodes", "sessions") => "nodesSessionsDelete",
            _ => "other",
        }
    }
}

impl std::fmt::Display for Rule {
    /// `create pods/exec on pod default/web`, as `kubectl auth can-i` reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.subresource.is_empty() {
            write!(f, "/{}", self.subresource)?;
        }
        if !self.group.is_empty() {
            write!(f, " (API group {})", self.group)?;
        }
        let kind = self.resource.trim_end_matches('s');
        match (self.namespace.as_str(), self.name.as_str()) {
            ("", "") => f.write_str(" in all namespaces"),
            (ns, "") => write!(f, " in namespace {ns}"),
            ("", name) => write!(f, " on {kind} {name}"),
            (ns, name) => write!(f, " on {kind} {ns}/{name}"),
        }
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Exec,
    Inspect,
    /// The node's inventory: its containers, their pods and namespaces.
    List,
    /// Seeing other users' running sessions.
    Sessions,
    /// Ending another user's session.
    Kill,
    /// One of the node's session recordings, read back.
    Replay,
}

impl Action {
    /// The request's name in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Exec => "exec",
            Action::Inspect => "inspect",
            Action::List => "list",
            Action::Sessions => "sessions",
            Action::Kill => "kill",
            Action::Replay => "replay",
        }
    }
}

/// What a request is about, as the agent established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A container of this pod (from the runtime's labels).
    Pod { namespace: String, name: String },
    /// The node itself.
    Node,
    /// A host PID, or a container the runtime ties to no pod.
    Host,
    /// A node tool run as node root inside a pod's namespaces: root on the
    /// pod's node, whatever namespaces it sees.
    NodeTool,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("{user} may not {rule}{}{}", if .reason.is_empty() { String::new() } else { format!(" ({})", .reason) }, .why)]
    Denied {
        user: String,
        rule: Box<Rule>,
        /// The authorizer's own words, if any.
        reason: String,
        /// Why this rule applies, when it is not plain.
        why: String,
    },
    #[error(
        "the agent does not know its node's name (--node-name, env NODE_NAME), so it cannot check the node right for {user}"
    )]
    NoNodeName { user: String },
    #[error(
        "{username} may not use this agent's unix socket: direct connections are for root on the node (uid 0); \
         others go through the API server (kubectl ns exec POD)"
    )]
    NotRoot { username: String },
    #[error("cannot check the right with the API server (SubjectAccessReview): {0}")]
    Review(#[source] KubeError),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubjectAccessReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    spec: SarSpec<'a>,
}

impl<'a> SubjectAccessReview<'a> {
    /// May the verified `who` do `rule`: with all that the TokenReview said
    /// of them (uid, groups, extra), as the API server's own checks use.
    fn of(who: &'a Identity, rule: &'a Rule) -> Self {
        SubjectAccessReview {
            api_version: "authorization.k8s.io/v1",
            kind: "SubjectAccessReview",
            spec: SarSpec {
                resource_attributes: rule,
                user: &who.username,
                groups: &who.groups,
                uid: &who.uid,
                extra: &who.extra,
            },
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarSpec<'a> {
    resource_attributes: &'a Rule,
    user: &'a str,
    groups: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extra: &'a std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct SarAnswer {
    #[serde(default)]
    status: SarStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SarStatus {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    evaluation_error: String,
}

/// Who may reach the agent and what they may do there.
#[derive(Debug)]
pub struct Access {
    client: Option<KubeClient>,
    authn: crate::access::authn::Authenticator,
    certs: std::sync::Arc<crate::access::clientcert::ClientCerts>,
    allowed: TtlCache<(Identity, Rule), ()>,
    node_name: Option<String>,
    skip: bool,
}

impl Access {
    /// `client`: the API server for reviews (`None` outside a cluster);
    /// `certs`: the TLS listeners' client certificates, checked against
    /// the cluster's CA; `skip`: `--insecure-skip-authz`.
    pub fn new(
        client: Option<KubeClient>,
        certs: std::sync::Arc<crate::access::clientcert::ClientCerts>,
        node_name: Option<String>,
        skip: bool,
    ) -> Access {
        Access {
            authn: crate::access::authn::Authenticator::new(client.clone()),
            certs,
            client,
            allowed: TtlCache::new(),
            node_name,
            skip,
        }
    }

    /// The TLS listeners' client certificates.
    pub fn certs(&self) -> std::sync::Arc<crate::access::clientcert::ClientCerts> {
        self.certs.clone()
    }

    pub fn skips_authz(&self) -> bool {
        self.skip
    }

    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// The caller's verified identity and how it was established
    /// ([`crate::access::authn::identify`]).
    pub async fn identify(&self, caller: &Caller) -> Result<(Identity, Method), AuthnError> {
        crate::access::authn::identify(caller, &self.authn, &self.certs, self.skip).await
    }

    /// The rule `action` on `subject` needs.
    pub fn rule(&self, action: Action, subject: &Subject, who: &Identity) -> Result<Rule, AuthzError> {
        let node = || {
            self.node_name.as_deref().ok_or_else(|| AuthzError::NoNodeName {
                user: who.username.clone(),
            })
        };
        Ok(match (action, subject) {
            // The answer names the containers of every namespace's pods on
            // the node: what listing pods in all namespaces shows.
            (Action::List, _) => Rule::pods_list(),
            (Action::Sessions, _) => Rule::node_sessions("list", node()?),
            (Action::Kill, _) => Rule::node_sessions("delete", node()?),
            (Action::Replay, _) => Rule::node_recordings(node()?),
            (Action::Exec, Subject::Pod { namespace, name }) => Rule::pod_exec(namespace, name),
            (Action::Inspect, Subject::Pod { namespace, name }) => Rule::pod_get(namespace, name),
            (Action::Inspect, Subject::Node) => Rule::node_get(node()?),
            (_, Subject::Node | Subject::Host | Subject::NodeTool) => Rule::node_exec(node()?),
        })
    }

    /// Allows or denies `who` `action` on `subject`; `Ok` names the rule
    /// that was checked, if one was.
    pub async fn authorize(
        &self,
        who: &Identity,
        method: Method,
        action: Action,
        subject: &Subject,
    ) -> Result<Option<Rule>, AuthzError> {
        if self.skip {
            return Ok(None);
        }
        match method {
            Method::Skip => return Ok(None),
            // Root on the node may do anything on the node anyway.
            Method::Peercred if who.uid == "0" => return Ok(None),
            Method::Peercred => {
                return Err(AuthzError::NotRoot {
                    username: who.username.clone(),
                });
            }
            Method::Token | Method::X509 => {}
        }
        let rule = self.rule(action, subject, who)?;
        let key = (who.clone(), rule.clone());
        if self.allowed.get(&key).is_some() {
            return Ok(Some(rule));
        }
        let client = self
            .client
            .as_ref()
            .ok_or(AuthzError::Review(KubeError::NotConfigured))?;
        let review = SubjectAccessReview::of(who, &rule);
        let answer: SarAnswer = client
            .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &review)
            .await
            .map_err(AuthzError::Review)?;
        if answer.status.allowed {
            self.allowed.put(key, ());
            return Ok(Some(rule));
        }
        let why = match (action, subject) {
            (Action::Sessions | Action::Kill, _) => {
                ": another user's sessions need it, to see or to end them; your own need no right".to_owned()
            }
            (_, Subject::Host) => {
                ": a host PID, or a container the runtime ties to no pod, counts as the node".to_owned()
            }
            (_, Subject::NodeTool) => {
                ": a node tool runs as root on the node, also inside a pod's namespaces, \
                so it needs the node right as well as pods/exec; with -m (the container's own binary, run as \
                the container) pods/exec alone is enough"
                    .to_owned()
            }
            _ => String::new(),
        };
        let reason = if answer.status.reason.is_empty() {
            answer.status.evaluation_error
        } else {
            answer.status.reason
        };
        Err(AuthzError::Denied {
            user: who.username.clone(),
            rule: Box::new(rule),
            reason,
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certs() -> std::sync::Arc<crate::access::clientcert::ClientCerts> {
        std::sync::Arc::new(crate::access::clientcert::ClientCerts::new(None).unwrap())
    }

    fn alice() -> Identity {
        Identity {
            username: "alice".into(),
            uid: "u1".into(),
            groups: vec!["devs".into()],
            extra: [("scopes".to_owned(), vec!["x".to_owned()])].into(),
        }
    }

    #[test]
    fn rules_read_like_kubectl_auth_can_i() {
        assert_eq!(
            Rule::pod_exec("default", "web").to_string(),
            "create pods/exec on pod default/web"
        );
        assert_eq!(
            Rule::node_exec("n1").to_string(),
            "create nodes/exec (API group kubectl-ns.io) on node n1"
        );
        assert_eq!(Rule::node_get("n1").to_string(), "get nodes on node n1");
        assert_eq!(
            Rule::node_recordings("n1").to_string(),
            "get nodes/recordings (API group kubectl-ns.io) on node n1"
        );
        assert_eq!(Rule::pods_list().to_string(), "list pods in all namespaces");
        assert_eq!(
            Rule::node_sessions("delete", "n1").to_string(),
            "delete nodes/sessions (API group kubectl-ns.io) on node n1"
        );
    }

    #[test]
    fn each_target_needs_its_rule() {
        let a = Access::new(None, certs(), Some("n1".into()), false);
        let pod = Subject::Pod {
            namespace: "default".into(),
            name: "web".into(),
        };
        let who = alice();
        let cases = [
            (Action::Exec, &pod, Rule::pod_exec("default", "web")),
            (Action::Inspect, &pod, Rule::pod_get("default", "web")),
            (Action::Exec, &Subject::Node, Rule::node_exec("n1")),
            (Action::Exec, &Subject::Host, Rule::node_exec("n1")),
            // A node tool in a pod: the node's right, on the pod's node.
            (Action::Exec, &Subject::NodeTool, Rule::node_exec("n1")),
            (Action::Inspect, &Subject::Node, Rule::node_get("n1")),
            (Action::Inspect, &Subject::Host, Rule::node_exec("n1")),
            (Action::List, &Subject::Node, Rule::pods_list()),
            (
                Action::Sessions,
                &Subject::Node,
                Rule::node_sessions("list", "n1"),
            ),
            (Action::Kill, &Subject::Node, Rule::node_sessions("delete", "n1")),
            (Action::Replay, &Subject::Node, Rule::node_recordings("n1")),
        ];
        for (action, subject, rule) in cases {
            assert_eq!(
                a.rule(action, subject, &who).unwrap(),
                rule,
                "{action:?} {subject:?}"
            );
        }
        let nameless = Access::new(None, certs(), None, false);
        assert!(matches!(
            nameless.rule(Action::Exec, &Subject::Node, &who),
            Err(AuthzError::NoNodeName { .. })
        ));
    }

    #[test]
    fn review_carries_the_verified_identity() {
        let who = alice();
        let rule = Rule::pod_exec("default", "web");
        let body = serde_json::to_value(SubjectAccessReview::of(&who, &rule)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {
                    "resourceAttributes": {"namespace": "default", "verb": "create", "group": "",
                        "resource": "pods", "subresource": "exec", "name": "web"},
                    "user": "alice", "groups": ["devs"], "uid": "u1", "extra": {"scopes": ["x"]},
                }
            })
        );
    }

    #[test]
    fn recorded_answers_of_rbac_parse() {
        // A real API server's answers (v1.32), recorded in tests/fixtures:
        // RBAC gives no reason when it denies.
        let answer = |json: &str| {
            serde_json::from_str::<SarAnswer>(json)
                .expect("recorded answer")
                .status
        };
        let allowed = answer(include_str!(
            "../../../tests/fixtures/kube-v1.32/sar-allowed.json"
        ));
        assert!(allowed.allowed);
        let denied = answer(include_str!("../../../tests/fixtures/kube-v1.32/sar-denied.json"));
        assert!(!denied.allowed);
        assert_eq!(
            (denied.reason.as_str(), denied.evaluation_error.as_str()),
            ("", "")
        );
    }

    #[tokio::test]
    async fn unix_peers_other_than_root_are_refused() {
        let a = Access::new(None, certs(), Some("n1".into()), false);
        let (who, m) = a.identify(&Caller::Unix(Some(1000))).await.unwrap();
        let e = a
            .authorize(&who, m, Action::Exec, &Subject::Node)
            .await
            .unwrap_err();
        assert!(matches!(e, AuthzError::NotRoot { .. }), "{e}");
        let (root, m) = a.identify(&Caller::Unix(Some(0))).await.unwrap();
        assert_eq!(
            a.authorize(&root, m, Action::Exec, &Subject::Node).await.unwrap(),
            None
        );
        assert!(matches!(
            a.identify(&Caller::Remote(None)).await,
            Err(AuthnError::NoToken)
        ));
    }
}
