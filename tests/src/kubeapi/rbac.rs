//! Who a request is from and what it may do: bearer tokens to users, the
//! [`Grant`]s that play RBAC bindings, RBAC's 403 for requests beyond the
//! kubectl-ns-user roles, and the TokenReview and SubjectAccessReview
//! endpoints the agent asks.

use std::sync::Mutex;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use super::responses::{About, bad_request, json_response, unauthorized};
use super::{AGENT_USER, FakeApi, State, body_bytes, header};

/// An RBAC rule bound to a user or group (`group:NAME`): `verb` on
/// `resource` (`pods/exec` for a subresource) in API `group`, in
/// `namespace` (`None`: a ClusterRoleBinding, everywhere), on `name`
/// (`None`: any). `*` matches anything, as in RBAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Grant {
    /// `verb resource` in API group `group` for `subject`, everywhere.
    pub fn new(subject: &str, verb: &str, group: &str, resource: &str) -> Grant {
        Grant {
            subject: subject.into(),
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: None,
            name: None,
        }
    }

    /// Only in `namespace`, as a RoleBinding grants.
    pub fn in_namespace(mut self, namespace: &str) -> Grant {
        self.namespace = Some(namespace.into());
        self
    }

    /// Only on the object `name` (`resourceNames`).
    pub fn named(mut self, name: &str) -> Grant {
        self.name = Some(name.into());
        self
    }

    /// Whether this grant allows `user` (in `groups`) the request in a
    /// SubjectAccessReview's `resourceAttributes`.
    fn allows(&self, user: &str, groups: &[String], attrs: &Value) -> bool {
        let field = |k: &str| attrs.get(k).and_then(Value::as_str).unwrap_or("");
        let wild = |mine: &str, theirs: &str| mine == "*" || mine == theirs;
        let subject = match self.subject.strip_prefix("group:") {
            Some(g) => groups.iter().any(|x| x == g),
            None => self.subject == user,
        };
        let resource = match field("subresource") {
            "" => field("resource").to_owned(),
            sub => format!("{}/{sub}", field("resource")),
        };
        subject
            && wild(&self.verb, field("verb"))
            && wild(&self.group, field("group"))
            && wild(&self.resource, &resource)
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == field("namespace"))
            && self.name.as_deref().is_none_or(|n| n == field("name"))
    }
}

/// What tests set about users and their rights.
impl FakeApi {
    /// A token the TokenReview endpoint vouches for, naming `user` in
    /// `groups`.
    pub fn add_user(&self, token: &str, user: &str, groups: &[&str]) {
        self.state
            .lock()
            .expect("state")
            .tokens
            .insert(token.to_owned(), user_info(token, user, groups));
    }

    /// Makes `token` expire when an agent's TokenReview asks about it: the
    /// plugin's own requests with it have passed, the agent's check fails,
    /// as for a token that expired in between.
    pub fn expire_on_review(&self, token: &str) {
        self.state
            .lock()
            .expect("state")
            .expiring
            .insert(token.to_owned());
    }

    /// Replaces every grant (the default: [`super::USER`] may do anything).
    pub fn set_grants(&self, grants: Vec<Grant>) {
        self.state.lock().expect("state").grants = grants;
    }

    /// The TokenReview and SubjectAccessReview bodies received so far.
    pub fn reviews(&self) -> Vec<Value> {
        self.state.lock().expect("state").reviews.clone()
    }

    /// Gives the user only the kubectl-ns-user roles: reading pods and
    /// nodes works, everything an install needs is forbidden.
    pub fn user_only(&self, on: bool) {
        self.state.lock().expect("state").user_only = on;
    }

    /// Gives `user` no rights at all, as for a user no RBAC binding names:
    /// each of their requests but discovery gets RBAC's 403.
    pub fn without_rights(&self, user: &str) {
        self.state
            .lock()
            .expect("state")
            .rightless
            .insert(user.to_owned());
    }
}

/// The user a request's bearer token names; `None` for a token the API
/// server does not know, which it answers with [`unauthorized`]. A request
/// without a token is anonymous (the fake does not see client
/// certificates, which the plugin presents to agents only).
pub(super) fn caller(req: &Request<Incoming>, state: &State) -> Option<String> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        None => Some("system:anonymous".to_owned()),
        Some(t) => state
            .tokens
            .get(t)
            .and_then(|u| u["username"].as_str().map(str::to_owned)),
    }
}

/// Whether the grants, playing RBAC, allow `user` (in the groups its token
/// names) the request in `attrs` (a SubjectAccessReview's
/// `resourceAttributes`): how the fake authorizes what it serves itself
/// with per-verb rights, such as `create pods/exec`.
pub(super) fn allowed(state: &State, user: &str, attrs: &Value) -> bool {
    let groups: Vec<String> = state
        .tokens
        .values()
        .find(|u| u["username"] == user)
        .and_then(|u| u["groups"].as_array())
        .map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    state.grants.iter().any(|g| g.allows(user, &groups, attrs))
}

/// Whether a path is one that only an installer (cluster-admin) may touch:
/// everything but pods, nodes, port-forwards, and the discovery every user
/// may read (`system:discovery`).
pub(super) fn installer_only(method: &hyper::Method, parts: &[&str]) -> bool {
    let reads_pods_or_nodes = matches!(
        parts,
        ["api", "v1", "nodes", ..] | ["api", "v1", "pods"] | ["api", "v1", "namespaces", _, "pods", ..]
    );
    !(reads_pods_or_nodes || is_discovery(parts)) || method != hyper::Method::GET
}

/// `/version`, `/api`, `/apis`: what RBAC's `system:discovery` and
/// `system:public-info-viewer` roles let every user read.
pub(super) fn is_discovery(parts: &[&str]) -> bool {
    matches!(parts, ["version"] | ["api"] | ["apis"])
}

/// The API server's 403 to `user` for `path`, worded as RBAC words it.
pub(super) fn forbidden(user: &str, method: &hyper::Method, parts: &[&str]) -> Response<Full<Bytes>> {
    let (group, rest) = match parts {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => ("", parts),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, rest @ ..] => (Some(*ns), [&[*r][..], rest].concat()),
        _ => (None, rest.to_vec()),
    };
    let about = About {
        group,
        resource: rest.first().copied().unwrap_or(""),
        name: rest.get(1).copied().unwrap_or(""),
    };
    let verb = verb(method, !about.name.is_empty());
    about.forbidden(user, verb, rest.get(2).copied().unwrap_or(""), namespace)
}

/// The verb RBAC checks for a request, the method's as v1.32 maps it. A
/// port-forward's or exec's WebSocket upgrade is a GET, so `get` (v1.35
/// checks `create` as well: AuthorizePodWebsocketUpgradeCreatePermission).
pub(super) fn verb(method: &hyper::Method, named: bool) -> &'static str {
    match *method {
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        hyper::Method::POST => "create",
        _ if !named => "list",
        _ => "get",
    }
}

/// A TokenReview or SubjectAccessReview, from the agent's ServiceAccount
/// only (others are forbidden, as without RBAC for reviews): the request
/// echoed with its `status` filled in.
pub(super) async fn review(
    req: Request<Incoming>,
    state: &Mutex<State>,
    kind: &str,
) -> Response<Full<Bytes>> {
    let user_agent = header(&req, "user-agent");
    let caller = caller(&req, &state.lock().expect("state"));
    let body = body_bytes(req).await;
    let mut st = state.lock().expect("state");
    let Some(caller_user) = caller else {
        return unauthorized();
    };
    let resource = if kind == "TokenReview" {
        "tokenreviews"
    } else {
        "subjectaccessreviews"
    };
    let group = path_group(kind);
    if caller_user != AGENT_USER {
        let about = About {
            group,
            resource,
            name: "",
        };
        return about.forbidden(&caller_user, "create", "", None);
    }
    let Ok(mut obj) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body is not JSON".into());
    };
    let api_version = format!("{group}/v1");
    if obj["kind"] != kind || obj["apiVersion"] != api_version {
        return bad_request(format!(
            "expected a {group}/v1 {kind}, got {} {}",
            obj["apiVersion"], obj["kind"]
        ));
    }
    st.reviews.push(obj.clone());
    let spec = obj["spec"].clone();
    obj["metadata"] = created_metadata(&spec, &api_version, &user_agent);
    // `omitempty` everywhere: an invalid token's review has no
    // `authenticated`, an empty `user`; RBAC gives no `reason`.
    obj["status"] = if kind == "TokenReview" {
        let token = spec["token"].as_str().unwrap_or("");
        if st.expiring.remove(token) {
            st.tokens.remove(token);
        }
        match st.tokens.get(token) {
            Some(user) => json!({"authenticated": true, "user": user, "audiences": [AUDIENCE]}),
            None => json!({"user": {}, "error": "invalid bearer token"}),
        }
    } else {
        let user = spec["user"].as_str().unwrap_or("");
        let groups: Vec<String> = spec["groups"]
            .as_array()
            .map(|g| g.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let attrs = &spec["resourceAttributes"];
        json!({"allowed": st.grants.iter().any(|g| g.allows(user, &groups, attrs))})
    };
    json_response(StatusCode::CREATED, &obj)
}

/// The audience of the cluster's tokens (its issuer's default).
const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// The metadata the API server gives an object created without a name (a
/// review): no timestamp, and the fields the request set, owned by the
/// manager its User-Agent names up to the first `/` (none without one).
fn created_metadata(spec: &Value, api_version: &str, user_agent: &str) -> Value {
    /// `f:` keys for each field set in `v`, `.` for an object that is
    /// itself a field, as `fieldsV1` lists them.
    fn fields(v: &Value) -> Value {
        let Value::Object(m) = v else {
            return json!({});
        };
        m.iter()
            .map(|(k, v)| {
                let mut f = fields(v);
                if v.is_object() {
                    f["."] = json!({});
                }
                (format!("f:{k}"), f)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
    let mut entry = json!({
        "operation": "Update", "apiVersion": api_version,
        "time": k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": fields(spec)},
    });
    let manager = user_agent.split('/').next().unwrap_or("");
    if !manager.is_empty() {
        entry["manager"] = manager.into();
    }
    json!({"creationTimestamp": null, "managedFields": [entry]})
}

fn path_group(kind: &str) -> &'static str {
    if kind == "TokenReview" {
        "authentication.k8s.io"
    } else {
        "authorization.k8s.io"
    }
}

/// The `user` a TokenReview of `token` names: as for a ServiceAccount
/// token, with the credential's ID in `extra`.
pub(super) fn user_info(token: &str, user: &str, groups: &[&str]) -> Value {
    json!({"username": user, "uid": format!("{user}-uid"), "groups": groups,
           "extra": {"authentication.kubernetes.io/credential-id": [format!("JTI={token}")]}})
}
