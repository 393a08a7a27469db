//! Kubeconfigs for the fake's users: with another user's token or none,
//! or with a client certificate the cluster's client CA signs.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use base64::Engine;

use super::{FakeApi, USER_TOKEN};

/// Where the API server publishes its client CA.
pub const CLIENT_CA_PATH: &str =
    "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";

/// A CA for client certificates, and its certificate in PEM.
pub fn client_ca() -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kubernetes-client-ca");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).expect("CA").pem();
    (rcgen::Issuer::new(params, key), pem)
}

impl FakeApi {
    /// Removes the client CA, as on a cluster whose API server takes no
    /// client certificates.
    pub fn remove_client_ca(&self) {
        self.state.lock().expect("state").objects.remove(CLIENT_CA_PATH);
    }

    /// A kubeconfig whose user holds a client certificate the cluster's
    /// client CA signed: CN `user`, O `group` (as `kubeadm` makes them;
    /// rcgen writes one O at most), and no token.
    pub fn kubeconfig_with_cert(&self, user: &str, group: Option<&str>) -> PathBuf {
        self.kubeconfig_signed_by(&self.client_ca, user, group)
    }

    /// [`FakeApi::kubeconfig_with_cert`], signed by `ca` instead.
    pub fn kubeconfig_signed_by(
        &self,
        ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
        user: &str,
        group: Option<&str>,
    ) -> PathBuf {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, user);
        if let Some(g) = group {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, g);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, ca).expect("sign");
        let b64 = |t: String| base64::engine::general_purpose::STANDARD.encode(t);
        self.kubeconfig_for(&format!(
            "client-certificate-data: {}\n    client-key-data: {}",
            b64(cert.pem()),
            b64(key.serialize_pem())
        ))
    }

    /// A kubeconfig like [`FakeApi::kubeconfig`] whose user is `user` (the
    /// YAML under `user:`, e.g. `token: T`; empty for no credentials).
    pub fn kubeconfig_for(&self, user: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let user = if user.is_empty() {
            " {}".to_owned()
        } else {
            format!("\n    {user}")
        };
        let text = text.replace(&format!("\n    token: {USER_TOKEN}"), &user);
        let path = self._dir.path().join(format!("kubeconfig-{n}"));
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    /// The kubeconfig path as a string, for `--kubeconfig`.
    pub fn kubeconfig_arg(&self) -> String {
        self.kubeconfig.display().to_string()
    }
}

/// Writes the kubeconfig of [`FakeApi::kubeconfig`]: context `fake` for
/// the server at `addr` (trusting `cert_pem`), user `tester` with
/// [`USER_TOKEN`], default namespace `default`.
pub(super) fn write_kubeconfig(path: &std::path::Path, addr: std::net::SocketAddr, cert_pem: &str) {
    let ca = base64::engine::general_purpose::STANDARD.encode(cert_pem);
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {ca}\n\
             users:\n- name: tester\n  user:\n    token: {USER_TOKEN}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: default\n",
            addr.port()
        ),
    )
    .expect("kubeconfig");
}
