//! The fake's answers as the API server shapes them: JSON bodies, the
//! `metav1.Status` failures (401, 404, 403 worded as RBAC words them),
//! with the `details` a real server (v1.32) fills in.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

pub(super) fn json_response(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("response")
}

/// A list of `kind` (`PodList`, …), as the API server sends a collection.
pub(super) fn list(kind: &str, items: Vec<Value>) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        &json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// A `metav1.Status` failure, as the API server sends with 4xx codes.
pub(super) fn status(code: StatusCode, reason: &str, message: String) -> Response<Full<Bytes>> {
    json_response(code, &status_body(code, reason, message))
}

/// The 400 `BadRequest` the API server gives a request it cannot take.
pub(super) fn bad_request(message: String) -> Response<Full<Bytes>> {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn status_body(code: StatusCode, reason: &str, message: String) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    })
}

/// The API server's answer to a request with a bearer token it does not
/// know (an expired one, say).
pub(super) fn unauthorized() -> Response<Full<Bytes>> {
    status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into())
}

/// The object a NotFound or Forbidden answer is about, as the API server
/// names it: a resource (plural) of an API group, and the object's name
/// (empty for a collection).
pub(super) struct About<'a> {
    pub(super) group: &'a str,
    pub(super) resource: &'a str,
    pub(super) name: &'a str,
}

impl<'a> About<'a> {
    /// An object of the core group ("" in the API's words).
    pub(super) fn core(resource: &'a str, name: &'a str) -> About<'a> {
        About {
            group: "",
            resource,
            name,
        }
    }

    /// A failure about this object: `details` names it (with the resource
    /// as its `kind`), leaving out what is empty, as `omitempty` does.
    pub(super) fn status(&self, code: StatusCode, reason: &str, message: String) -> Response<Full<Bytes>> {
        let mut body = status_body(code, reason, message);
        let details: serde_json::Map<String, Value> = [
            ("name", self.name),
            ("group", self.group),
            ("kind", self.resource),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
        body["details"] = details.into();
        json_response(code, &body)
    }

    /// `pods "web"`, `tokenreviews.authentication.k8s.io`: how the API
    /// server's messages name it.
    pub(super) fn named(&self) -> String {
        let resource = if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        };
        if self.name.is_empty() {
            resource
        } else {
            format!("{resource} \"{}\"", self.name)
        }
    }

    pub(super) fn not_found(&self) -> Response<Full<Bytes>> {
        self.status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} not found", self.named()),
        )
    }

    /// RBAC's refusal of `verb` on this object (on its `subresource`, if
    /// not empty) to `user`, in `namespace` or at the cluster scope.
    pub(super) fn forbidden(
        &self,
        user: &str,
        verb: &str,
        subresource: &str,
        namespace: Option<&str>,
    ) -> Response<Full<Bytes>> {
        let resource = if subresource.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}/{subresource}", self.resource)
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        self.status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                self.named(),
                self.group
            ),
        )
    }
}
