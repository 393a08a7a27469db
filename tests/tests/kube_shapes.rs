//! The fake API server answers as a real one does: its TokenReview,
//! SubjectAccessReview and error `Status` bodies against the answers a
//! real v1.32 API server gave to the same requests (`tests/fixtures/kube-v1.32/`),
//! key by key at every level. The agent's and the plugin's parsers are
//! tested against those recordings in their crates; this keeps the fake,
//! which every end-to-end test talks to, from drifting away from them
//! again (it once answered an invalid token's review with a shape no API
//! server sends, and the agent's misreading of the real one went unseen).

use std::sync::Arc;

use kns_tests::kubeapi::{AGENT_TOKEN, FakeApi, Grant, running_pod};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The User-Agent of the kubectl that made the recordings: the API server
/// names the manager of a created object's fields after it.
const KUBECTL: &str = "kubectl/v1.32.13 (linux/amd64) kubernetes/3b9ae7b";

/// The ServiceAccount whose token the recordings were made with.
const READER: &str = "system:serviceaccount:fx:reader";
const READER_TOKEN: &str = "reader-token";

fn recorded(name: &str) -> Value {
    let path = format!("{}/fixtures/kube-v1.32/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Where `fake` and `real` differ in shape: a key one has and the other
/// lacks, or a value of another JSON type. Array elements are compared
/// with the real array's first (lists hold one kind of thing).
fn differences(at: &str, fake: &Value, real: &Value) -> Vec<String> {
    match (fake, real) {
        (Value::Object(f), Value::Object(r)) => {
            let mut out = Vec::new();
            for k in r.keys().filter(|k| !f.contains_key(*k)) {
                out.push(format!("{at}.{k}: missing"));
            }
            for k in f.keys().filter(|k| !r.contains_key(*k)) {
                out.push(format!("{at}.{k}: not in the real answer"));
            }
            for (k, v) in f {
                if let Some(rv) = r.get(k) {
                    out.extend(differences(&format!("{at}.{k}"), v, rv));
                }
            }
            out
        }
        (Value::Array(f), Value::Array(r)) => match r.first() {
            Some(first) => f
                .iter()
                .enumerate()
                .flat_map(|(i, v)| differences(&format!("{at}[{i}]"), v, first))
                .collect(),
            None => Vec::new(),
        },
        _ if std::mem::discriminant(fake) == std::mem::discriminant(real) => Vec::new(),
        _ => vec![format!("{at}: {fake} where the real answer has {real}")],
    }
}

fn assert_same_shape(fake: &Value, name: &str) {
    let real = recorded(name);
    let diff = differences("", fake, &real);
    assert!(diff.is_empty(), "{name}: {diff:#?}\nfake: {fake:#}");
}

/// One HTTPS request to `api` with bearer `token`, as kubectl makes it:
/// the answer's status code and JSON body.
fn call(api: &FakeApi, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let ca = std::fs::read(api.service_account_dir().join("ca.crt")).expect("the fake's CA");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.expect("a PEM certificate")).expect("a CA");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nUser-Agent: {KUBECTL}\r\n\
         Accept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answer = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(api.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .expect("TLS");
        s.write_all(request.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        // The server may close without TLS's close_notify: what came is all.
        let _ = s.read_to_end(&mut answer).await;
        answer
    });
    let text = String::from_utf8(answer).expect("a UTF-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head}"));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code, body)
}

/// A review of `kind` created with `spec` and the agent's ServiceAccount
/// token, as the agent creates them.
fn review(api: &FakeApi, kind: &str, spec: &Value) -> Value {
    let (group, resource) = match kind {
        "TokenReview" => ("authentication.k8s.io", "tokenreviews"),
        _ => ("authorization.k8s.io", "subjectaccessreviews"),
    };
    let (code, body) = call(
        api,
        "POST",
        &format!("/apis/{group}/v1/{resource}"),
        AGENT_TOKEN,
        Some(&json!({"kind": kind, "apiVersion": format!("{group}/v1"), "spec": spec})),
    );
    assert_eq!(code, 201, "{body:#}");
    body
}

fn fake() -> FakeApi {
    let api = FakeApi::start();
    api.add_user(
        READER_TOKEN,
        READER,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:fx",
            "system:authenticated",
        ],
    );
    api
}

#[test]
fn token_reviews_are_answered_as_the_api_server_does() {
    let api = fake();
    let invalid = review(&api, "TokenReview", &json!({"token": "not-a-token"}));
    assert_same_shape(&invalid, "tokenreview-invalid.json");
    // No `authenticated` (omitempty), `user: {}`.
    assert_eq!(invalid["status"], recorded("tokenreview-invalid.json")["status"]);

    let valid = review(&api, "TokenReview", &json!({"token": READER_TOKEN}));
    assert_same_shape(&valid, "tokenreview-valid.json");
    assert_eq!(valid["status"]["user"]["username"], READER);
    assert_eq!(
        valid["status"]["user"]["groups"],
        recorded("tokenreview-valid.json")["status"]["user"]["groups"]
    );
}

#[test]
fn subject_access_reviews_are_answered_as_rbac_does() {
    let api = fake();
    api.set_grants(vec![Grant::new("group:system:masters", "*", "*", "*")]);
    for name in ["sar-allowed.json", "sar-denied.json"] {
        let real = recorded(name);
        let answer = review(&api, "SubjectAccessReview", &real["spec"]);
        assert_same_shape(&answer, name);
        // RBAC gives no reason, allowing or denying.
        assert_eq!(answer["status"], real["status"], "{name}");
    }
}

#[test]
fn failures_are_the_api_servers_status_bodies() {
    let api = fake();
    api.add_pod(running_pod("fx", "web", "vm", &[("app", "0123")]));
    api.add_pod(running_pod("kubectl-ns-system", "x", "vm", &[("agent", "4567")]));

    let (code, body) = call(&api, "GET", "/api/v1/namespaces/fx/pods/web", "not-a-token", None);
    assert_eq!((code, body), (401, recorded("status-401.json")));

    let (code, body) = call(&api, "GET", "/api/v1/namespaces/fx/pods/nope", READER_TOKEN, None);
    assert_eq!((code, body), (404, recorded("status-404-pod.json")));

    // The same request with the reader's token, and the same wording.
    api.forbid_portforward(true);
    let portforward = "/api/v1/namespaces/kubectl-ns-system/pods/x/portforward?ports=7469";
    let (code, body) = call(&api, "POST", portforward, READER_TOKEN, None);
    assert_eq!((code, body), (403, recorded("status-403-portforward.json")));
    api.forbid_portforward(false);

    api.without_rights(READER);
    let (code, body) = call(&api, "GET", "/api/v1/namespaces/fx/pods/web", READER_TOKEN, None);
    assert_eq!((code, body), (403, recorded("status-403-get-pod.json")));
    let (code, body) = call(&api, "POST", portforward, READER_TOKEN, None);
    assert_eq!((code, body), (403, recorded("status-403-portforward.json")));
}
