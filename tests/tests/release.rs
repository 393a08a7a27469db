//! `scripts/release`: the archive holds what a user installs, and the krew
//! manifest names it by the right checksum.

use std::path::Path;
use std::process::Command;

use kns_tests::bins;
use sha2::{Digest, Sha256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[test]
fn the_release_archive_and_its_krew_manifest_agree() {
    let image = root().join("target/kns-agent-image.tar");
    assert!(
        image.exists(),
        "{} is missing: build it with scripts/image (scripts/test does)",
        image.display()
    );
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(root().join("scripts/release"))
        .arg(out.path())
        .env("PROFILE", "dev")
        .env("PLUGIN", bins::plugin())
        .env("IMAGE", &image)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", bins::stderr(&o));
    let version = env!("CARGO_PKG_VERSION");
    let name = format!("kubectl-ns_{version}_linux_amd64.tar.gz");
    let archive = out.path().join(&name);

    // What a user unpacks: the plugin, the completion hook, licence, README.
    let listing = Command::new("tar").arg("tzf").arg(&archive).output().unwrap();
    let files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        files,
        ["kubectl-ns", "kubectl_complete-ns", "LICENSE", "README.md"]
    );
    let unpacked = tempfile::tempdir().unwrap();
    let x = Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(x.success());
    let path = format!(
        "{}:{}",
        unpacked.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let v = Command::new("kubectl-ns")
        .arg("--version")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("kubectl-ns {version}")
    );
    let c = Command::new("kubectl_complete-ns")
        .arg("st")
        .env("PATH", &path)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&c.stdout),
        "status\tShow which nodes run an agent, its version and readiness (with --agent: that agent alone)\n:4\n"
    );

    // The krew manifest: the fields krew reads, and the archive's checksum.
    let text = std::fs::read_to_string(out.path().join("ns.yaml")).unwrap();
    let m: yaml_serde::Value = yaml_serde::from_str(&text).unwrap();
    assert_eq!(
        m["apiVersion"].as_str(),
        Some("krew.googlecontainertools.github.com/v1alpha2")
    );
    assert_eq!(m["kind"].as_str(), Some("Plugin"));
    assert_eq!(m["metadata"]["name"].as_str(), Some("ns"));
    let spec = &m["spec"];
    assert_eq!(spec["version"].as_str(), Some(format!("v{version}").as_str()));
    assert!(spec["shortDescription"].as_str().is_some_and(|s| !s.is_empty()));
    let p = &spec["platforms"][0];
    assert_eq!(p["selector"]["matchLabels"]["os"].as_str(), Some("linux"));
    assert_eq!(p["selector"]["matchLabels"]["arch"].as_str(), Some("amd64"));
    assert!(
        p["uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://") && u.ends_with(&name))
    );
    let sum = format!("{:x}", Sha256::digest(std::fs::read(&archive).unwrap()));
    assert_eq!(p["sha256"].as_str(), Some(sum.as_str()));
    assert_eq!(p["bin"].as_str(), Some("kubectl-ns"));
    for f in p["files"].as_sequence().expect("files") {
        let from = f["from"].as_str().expect("from");
        assert!(files.iter().any(|x| x == from), "{from} is not in the archive");
    }

    // The checksums file covers every artefact.
    let check = Command::new("sha256sum")
        .args(["-c", "sha256sums.txt"])
        .current_dir(out.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let checked = String::from_utf8_lossy(&check.stdout);
    for a in [
        name.as_str(),
        &format!("kubectl-ns-agent_{version}_linux_amd64.tar"),
        "ns.yaml",
    ] {
        assert!(checked.contains(&format!("{a}: OK")), "{checked}");
    }
}
