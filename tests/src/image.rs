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

/// An image to build: files for its one layer, and its command.
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
    pub cmd: Vec<&'a str>,
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
        cmd: vec!["/bin/sleep", "2147483647"],
    }
}

/// The agent image: the static `kubectl-ns-agent` and nothing else.
pub fn agent_spec(name: &str, binary: PathBuf) -> Spec<'_> {
    Spec {
        name,
        files: vec![("kubectl-ns-agent", binary)],
        links: Vec::new(),
        dirs: Vec::new(),
        cmd: vec!["/kubectl-ns-agent"],
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
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": spec.cmd,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    });
    let (config_digest, config_size) = write_blob(&blobs, &serde_json::to_vec(&config)?)?;
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
