//! The `kubectl create role`/`rolebinding` commands that would grant what
//! the agent's authorizer found missing (its `kns-denied-rule` trailer),
//! for a hint.

/// The rule the agent's authorizer found missing, from the
/// `kns-denied-rule` trailer: a SubjectAccessReview's resourceAttributes
/// and the user.
#[derive(Debug, serde::Deserialize)]
pub(super) struct DeniedRule {
    user: String,
    #[serde(default)]
    namespace: String,
    verb: String,
    #[serde(default)]
    group: String,
    resource: String,
    #[serde(default)]
    subresource: String,
}

/// The ClusterRole `manifests/` ships for the node right.
const NODE_ADMIN_ROLE: &str = "kubectl-ns-node-admin";
/// The ClusterRole `manifests/` ships for seeing and ending anyone's
/// sessions.
const SESSION_ADMIN_ROLE: &str = "kubectl-ns-session-admin";
/// The ClusterRole `manifests/` ships for reading the nodes' recordings.
const RECORDING_VIEWER_ROLE: &str = "kubectl-ns-recording-viewer";

/// The `kubectl create …` commands that would grant the rule of a
/// `kns-denied-rule` value (as a ListSessions answer carries it when it
/// lists only the caller's own sessions); `None` when it names no rule.
pub fn grant_for(denied_rule: &str) -> Option<String> {
    serde_json::from_str::<DeniedRule>(denied_rule)
        .ok()
        .map(|d| grant(&d).join("\n"))
}

/// The `kubectl create …` commands that would grant `d`, for a hint: one
/// line each.
pub(super) fn grant(d: &DeniedRule) -> Vec<String> {
    let subject = match d.user.strip_prefix("system:serviceaccount:") {
        Some(sa) => format!("--serviceaccount={sa}"),
        None => format!("--user={}", d.user),
    };
    let tag: String = d
        .user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut resource = d.resource.clone();
    if !d.group.is_empty() {
        resource = format!("{resource}.{}", d.group);
    }
    if !d.subresource.is_empty() {
        resource = format!("{resource}/{}", d.subresource);
    }
    let role = format!(
        "kubectl-ns-{}-{}{}",
        d.resource,
        d.verb,
        if d.subresource.is_empty() {
            String::new()
        } else {
            format!("-{}", d.subresource)
        }
    );
    let shipped = match (d.group.as_str(), d.resource.as_str(), d.subresource.as_str()) {
        ("kubectl-ns.io", "nodes", "exec") => Some(NODE_ADMIN_ROLE),
        ("kubectl-ns.io", "nodes", "recordings") => Some(RECORDING_VIEWER_ROLE),
        ("kubectl-ns.io", "nodes", "sessions") => Some(SESSION_ADMIN_ROLE),
        _ => None,
    };
    if let Some(role) = shipped {
        return vec![format!(
            "  kubectl create clusterrolebinding {role}-{tag} --clusterrole={role} {subject}"
        )];
    }
    let verb = &d.verb;
    if d.namespace.is_empty() {
        vec![
            format!("  kubectl create clusterrole {role} --verb={verb} --resource={resource}"),
            format!("  kubectl create clusterrolebinding {role}-{tag} --clusterrole={role} {subject}"),
        ]
    } else {
        let ns = &d.namespace;
        vec![
            format!("  kubectl create role {role} --verb={verb} --resource={resource} --namespace {ns}"),
            format!("  kubectl create rolebinding {role}-{tag} --role={role} {subject} --namespace {ns}"),
        ]
    }
}
