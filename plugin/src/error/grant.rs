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
    if d.group == "kubectl-ns.io" && d.resource == "nodes" && d.subresource == "exec" {
        return vec![format!(
            "  kubectl create clusterrolebinding {NODE_ADMIN_ROLE}-{tag} --clusterrole={NODE_ADMIN_ROLE} {subject}"
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
