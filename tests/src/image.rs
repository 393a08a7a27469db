//! OCI image archives built locally, with no registry and no Docker: a
//! layer tarball, a hand-written config, manifest and index, packed as an
//! OCI image layout that `ctr images import` accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// busybox-static, from Debian's package.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets the test image links; `ss` and `ip` are deliberately absent
/// so `-m` runs show the "not in the image" path.
const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "echo", "ls", "ps", "hostname", "httpd", "true", "id",
];

/// An image to build: files for its one layer, its platform, and its
/// command.
#[derive(Debug)]
pub struct Spec<'a> {
    /// Full reference, e.g. `docker.io/kns/busybox:1`.
    pub name: &'a str,
    /// (path in the image, file on this machine): copied with mode 0755.
    pub files: Vec<(&'a str, PathBuf)>,
    /// (link path in the image, target).
    pub links: Vec<(String, String)>,
    /// Empty directories the image needs (mount points, scratch space).
    pub dirs: Vec<&'a str>,
    /// The OCI config's `Entrypoint`: what Kubernetes' `args` are appended
    /// to (and what its `command` replaces).
    pub entrypoint: Vec<&'a str>,
    /// The OCI config's `Cmd`: default arguments, replaced by `args`.
    pub cmd: Vec<&'a str>,
    /// The OCI architecture (`amd64`, `arm64`).
    pub architecture: &'a str,
}

/// The busybox image used as both pause image and workload in tests.
pub fn busybox_spec(name: &str) -> Spec<'_> {
    Spec {
        name,
        files: vec![("bin/busybox", PathBuf::from(BUSYBOX))],
        links: APPLETS
            .iter()
            .map(|a| (format!("bin/{a}"), "busybox".to_owned()))
            .collect(),
        dirs: vec!["proc", "sys", "dev", "etc", "tmp", "www"],
        entrypoint: Vec::new(),
        cmd: vec!["/bin/sleep", "2147483647"],
        architecture: "amd64",
    }
}

/// The agent image: the static `kubectl-ns-agent` for `architecture` and
/// nothing else. The binary is the Entrypoint, as the Dockerfile's
/// ENTRYPOINT: a pod's `args` then become its arguments, where with a Cmd
/// alone they would replace the program (the kubelet would run `--listen`).
pub fn agent_spec<'a>(name: &'a str, binary: PathBuf, architecture: &'a str) -> Spec<'a> {
    Spec {
        name,
        files: vec![("kubectl-ns-agent", binary)],
        links: Vec::new(),
        dirs: Vec::new(),
        entrypoint: vec!["/kubectl-ns-agent"],
        cmd: Vec::new(),
        architecture,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn write_blob(blobs: &Path, data: &[u8]) -> anyhow::Result<(String, usize)> {
    let hex = sha256_hex(data);
    std::fs::write(blobs.join(&hex), data)?;
    Ok((format!("sha256:{hex}"), data.len()))
}

/// A reproducible tarball of `dir`'s contents: root-owned, sorted, epoch
/// timestamps, so the same files always give the same digest.
fn tar(out: &Path, dir: &Path) -> anyhow::Result<()> {
    run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "--sort=name",
            "--mtime=@0",
            "-cf",
        ])
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg("."))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Writes the image's files into `rootfs`: also usable as a chroot for
/// scratch-like test targets.
pub fn populate(spec: &Spec, rootfs: &Path) -> anyhow::Result<()> {
    for (dest, src) in &spec.files {
        let d = rootfs.join(dest);
        std::fs::create_dir_all(d.parent().expect("parent"))?;
        std::fs::copy(src, &d).with_context(|| format!("copying {}", src.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    }
    for (link, target) in &spec.links {
        let l = rootfs.join(link);
        std::fs::create_dir_all(l.parent().expect("parent"))?;
        std::os::unix::fs::symlink(target, &l)?;
    }
    for d in &spec.dirs {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::create_dir_all(rootfs)?;
    Ok(())
}

/// The OCI image config: platform, Entrypoint/Cmd (each omitted when
/// empty, as image builders do), environment, and the one layer.
pub fn config(spec: &Spec, layer_digest: &str) -> serde_json::Value {
    let mut config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "WorkingDir": "/",
    });
    if !spec.entrypoint.is_empty() {
        config["Entrypoint"] = serde_json::json!(spec.entrypoint);
    }
    if !spec.cmd.is_empty() {
        config["Cmd"] = serde_json::json!(spec.cmd);
    }
    serde_json::json!({
        "architecture": spec.architecture,
        "os": "linux",
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    })
}

/// Writes an OCI image archive for `spec` to `out`.
pub fn build(spec: &Spec, out: &Path) -> anyhow::Result<()> {
    if !Path::new(BUSYBOX).exists() && spec.files.iter().any(|(_, f)| f == Path::new(BUSYBOX)) {
        bail!("{BUSYBOX} is missing: apt-get install busybox-static");
    }
    let work = tempfile::tempdir()?;
    let rootfs = work.path().join("rootfs");
    populate(spec, &rootfs)?;
    let layer = work.path().join("layer.tar");
    tar(&layer, &rootfs)?;

    let layout = work.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let (layer_digest, layer_size) = write_blob(&blobs, &std::fs::read(&layer)?)?;
    let (config_digest, config_size) =
        write_blob(&blobs, &serde_json::to_vec(&config(spec, &layer_digest))?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }],
    });
    let (manifest_digest, manifest_size) = write_blob(&blobs, &serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {
                "io.containerd.image.name": spec.name,
                "org.opencontainers.image.ref.name": spec.name,
            },
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar(out, &layout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Cmd-only agent image made the kubelet run the DaemonSet's first
    /// arg (`--listen`) as the program: the binary must be the Entrypoint.
    #[test]
    fn agent_image_has_the_binary_as_entrypoint() {
        let spec = agent_spec("kns/agent:1", PathBuf::from("/x"), "arm64");
        let c = config(&spec, "sha256:00");
        assert_eq!(
            c["config"]["Entrypoint"],
            serde_json::json!(["/kubectl-ns-agent"])
        );
        assert!(c["config"].get("Cmd").is_none(), "{c}");
        assert_eq!(c["architecture"], "arm64");
        assert_eq!(c["os"], "linux");
    }

    /// What `kns-lab agent-image` writes, read back from the archive.
    #[test]
    fn written_archive_carries_the_entrypoint() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("agent");
        std::fs::write(&bin, b"not really").unwrap();
        let out = dir.path().join("agent.tar");
        build(&agent_spec("kns/agent:1", bin, "amd64"), &out).unwrap();
        let unpacked = dir.path().join("x");
        std::fs::create_dir(&unpacked).unwrap();
        run(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&unpacked)).unwrap();
        let blob = |digest: &str| -> serde_json::Value {
            let hex = digest.strip_prefix("sha256:").unwrap();
            serde_json::from_slice(&std::fs::read(unpacked.join("blobs/sha256").join(hex)).unwrap()).unwrap()
        };
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(unpacked.join("index.json")).unwrap()).unwrap();
        let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/kubectl-ns-agent"])
        );
        assert!(config["config"].get("Cmd").is_none(), "{config}");
    }
}
