//! `Resolver`: the client for the context the user chose, and the lookups
//! through it (a pod, a node, a node's agent pod); the decisions over what
//! it fetches are the pure functions of `resolve`.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;

use super::resolve::choose_agent;
use crate::error::{Failure, ResolveError, api_failure};

/// Looks things up through the API.
#[derive(Clone)]
pub struct Resolver {
    pub client: kube::Client,
    /// The namespace for pods given without one.
    pub namespace: String,
    pub agent_namespace: String,
    /// The kubeconfig's context, for what else needs it: who the user is,
    /// the cluster's URL.
    pub config: std::sync::Arc<kube::Config>,
}

impl Resolver {
    pub async fn pod(&self, namespace: Option<&str>, name: &str) -> Result<Pod, Failure> {
        let ns = namespace.unwrap_or(&self.namespace);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match api.get_opt(name).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(ResolveError::PodNotFound {
                pod: name.to_owned(),
                namespace: ns.to_owned(),
            }
            .into()),
            Err(e) => Err(api_failure(&format!("cannot get pod {ns}/{name}"), e)),
        }
    }

    pub async fn node(&self, name: &str) -> Result<(), Failure> {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get_opt(name).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ResolveError::NodeNotFound {
                node: name.to_owned(),
            }
            .into()),
            Err(e) => Err(api_failure(&format!("cannot get node {name}"), e)),
        }
    }

    /// The ready agent pod on `node`.
    pub async fn agent_on(&self, node: &str) -> Result<String, Failure> {
        let pods = super::agents::list(&self.client, &self.agent_namespace, Some(node))
            .await
            .map_err(|e| {
                api_failure(
                    &format!(
                        "cannot list kubectl-ns agents in namespace {}",
                        self.agent_namespace
                    ),
                    e,
                )
            })?;
        choose_agent(&pods, node, &self.agent_namespace)
    }
}

/// The resolver's API calls, against kube's `tower_test` mock playing the
/// API server's side of each request.
#[cfg(test)]
mod api_tests {
    use super::*;
    use crate::kube::resolve::AGENT_NAMESPACE;
    use http::{Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn resolver() -> (Resolver, Handle) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(svc, "default");
        let r = Resolver {
            client,
            namespace: "default".into(),
            agent_namespace: AGENT_NAMESPACE.into(),
            config: std::sync::Arc::new(kube::Config::new("http://127.0.0.1:1".parse().unwrap())),
        };
        (r, handle)
    }

    fn json(code: u16, v: serde_json::Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(v.to_string().into_bytes()))
            .unwrap()
    }

    fn not_found(name: &str) -> Response<Body> {
        json(
            404,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": format!("pods \"{name}\" not found"), "reason": "NotFound", "code": 404}),
        )
    }

    #[tokio::test]
    async fn pod_not_found_suggests_another_namespace() {
        let (r, mut handle) = resolver();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), http::Method::GET);
            assert_eq!(req.uri().path(), "/api/v1/namespaces/prod/pods/web-1");
            send.send_response(not_found("web-1"));
        });
        let e = r.pod(Some("prod"), "web-1").await.unwrap_err();
        server.await.unwrap();
        assert!(
            e.to_string().contains("pod web-1 not found in namespace prod"),
            "{}",
            e.to_string()
        );
        assert!(e.to_string().contains("--namespace NS or NS/web-1"), "{}", e);
    }

    #[tokio::test]
    async fn default_namespace_comes_from_the_context() {
        let (r, mut handle) = resolver();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/default/pods/web-1");
            send.send_response(json(
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "web-1", "namespace": "default"}}),
            ));
        });
        let pod = r.pod(None, "web-1").await.unwrap();
        server.await.unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
    }

    #[tokio::test]
    async fn agent_lookup_selects_by_label_and_node() {
        let (r, mut handle) = resolver();
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.uri().path(), "/api/v1/namespaces/kubectl-ns-system/pods");
            let q = req.uri().query().unwrap_or("").to_owned();
            assert!(
                q.contains("labelSelector=app.kubernetes.io%2Fname%3Dkubectl-ns-agent"),
                "{q}"
            );
            assert!(q.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{q}");
            send.send_response(json(
                200,
                serde_json::json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
            ));
        });
        let e = r.agent_on("node-a").await.unwrap_err();
        server.await.unwrap();
        assert!(
            e.to_string().contains("node node-a has no kubectl-ns agent"),
            "{}",
            e.to_string()
        );
    }

    #[tokio::test]
    async fn forbidden_names_the_rbac_needed() {
        let (r, mut handle) = resolver();
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.expect("a request");
            send.send_response(json(
                403,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "message": "pods is forbidden: User \"bob\" cannot list resource \"pods\"",
                    "reason": "Forbidden", "code": 403}),
            ));
        });
        let e = r.agent_on("node-a").await.unwrap_err();
        server.await.unwrap();
        assert!(
            e.to_string().contains("forbidden") && e.to_string().contains("kubectl-ns-user"),
            "{}",
            e.to_string()
        );
    }
}
