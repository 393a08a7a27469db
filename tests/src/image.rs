//! OCI image archives built locally, with no registry and no Docker: a
//! layer tarball, a hand-written config, manifest and index, packed as an
//! OCI image layout that `ctr images import` accepts.

use std::collections::BTreeMap;
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
    pub files: Vec<(String, PathBuf)>,
    /// (path in the image, contents): written with mode 0644.
    pub texts: Vec<(&'a str, String)>,
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
        files: vec![("bin/busybox".into(), PathBuf::from(BUSYBOX))],
        texts: Vec::new(),
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
        files: vec![("kubectl-ns-agent".into(), binary)],
        texts: Vec::new(),
        links: Vec::new(),
        dirs: Vec::new(),
        entrypoint: vec!["/kubectl-ns-agent"],
        cmd: Vec::new(),
        architecture,
    }
}

/// The toolbox's tools and the Debian packages they come from (which
/// scripts/deps installs), found on this machine.
pub const TOOLBOX_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("ss", "iproute2"),
    ("ps", "procps"),
    ("top", "procps"),
    ("tcpdump", "tcpdump"),
    ("strace", "strace"),
    ("dig", "bind9-dnsutils"),
];

/// Terminal descriptions for `top` and busybox's `vi` under `-t`: the
/// agent sets TERM=xterm, the plugin passes the user's.
const TERMINFO: &[&str] = &[
    "/lib/terminfo/d/dumb",
    "/lib/terminfo/l/linux",
    "/lib/terminfo/s/screen",
    "/lib/terminfo/s/screen-256color",
    "/lib/terminfo/v/vt100",
    "/lib/terminfo/x/xterm",
    "/lib/terminfo/x/xterm-256color",
];

/// Where Debian's merged /usr puts what is named under /bin, /sbin, /lib
/// and /lib64; the image has the same links, so either name works.
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib64"];

/// The toolbox's tree: files and symbolic links, by path in the image,
/// each file exactly once under merged /usr.
#[derive(Debug, Default)]
struct Tree {
    files: BTreeMap<String, PathBuf>,
    links: BTreeMap<String, String>,
}

impl Tree {
    /// Adds `path` from this machine under its merged-/usr name, and what
    /// its symbolic links lead to.
    fn add(&mut self, path: &Path) -> anyhow::Result<()> {
        let rel = path
            .strip_prefix("/")
            .with_context(|| format!("{} is not absolute", path.display()))?;
        let rel = rel.to_string_lossy();
        let name = match MERGED.iter().find(|d| rel.starts_with(&format!("{d}/"))) {
            Some(_) => format!("usr/{rel}"),
            None => rel.into_owned(),
        };
        if self.files.contains_key(&name) || self.links.contains_key(&name) {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_symlink() {
            let target = std::fs::read_link(path)?;
            self.links.insert(name, target.to_string_lossy().into_owned());
            let resolved = match target.is_absolute() {
                true => target,
                false => path.parent().expect("an absolute path has a parent").join(target),
            };
            return self.add(&resolved);
        }
        self.files.insert(name, path.to_owned());
        Ok(())
    }

    /// Adds every shared library the program `path` loads, with the
    /// dynamic loader, as ldd(1) lists them.
    fn add_libraries(&mut self, path: &Path) -> anyhow::Result<()> {
        let out = Command::new("ldd")
            .arg(path)
            .output()
            .with_context(|| format!("running ldd {}", path.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "ldd {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for line in text.lines() {
            if line.contains("not found") {
                bail!(
                    "{} needs a library this machine lacks: {}",
                    path.display(),
                    line.trim()
                );
            }
            // `libc.so.6 => /lib/…/libc.so.6 (0x…)`, `/lib64/ld-linux….so.2
            // (0x…)`; the vDSO has no file.
            let lib = line.split("=>").last().unwrap_or_default().trim();
            if let Some(file) = lib.split_whitespace().next().filter(|f| f.starts_with('/')) {
                self.add(Path::new(file))?;
            }
        }
        Ok(())
    }
}

/// The first executable named `tool` in the system directories, where
/// Debian's packages put them.
fn system_tool(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The toolbox variant of the agent image (`scripts/image --toolbox`): the
/// agent, plus iproute2's ip and ss, procps' ps and top, tcpdump, strace and
/// bind9-dnsutils' dig from this machine, and `busybox` (every applet no
/// real tool provides), each with exactly the shared libraries ldd(1)
/// finds for it and the dynamic loader. `busybox` is Debian's `busybox`
/// package's binary, not busybox-static's: that one's shell runs its own
/// applets before PATH, so `sh` would give busybox's ps and ip instead of
/// the real ones. glibc 2.36 has its files and dns NSS modules built in, so
/// nothing is dlopen'd for user names (ps, tcpdump dropping to its user) or
/// name lookups; the image brings the /etc files they read. Only for the
/// machine's own architecture: the tools are this machine's binaries.
pub fn toolbox_spec<'a>(
    name: &'a str,
    binary: PathBuf,
    architecture: &'a str,
    busybox: &Path,
) -> anyhow::Result<Spec<'a>> {
    let here = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    if architecture != here {
        bail!(
            "the toolbox image takes its tools from this machine's Debian packages, which are {here}: build the \
             {architecture} toolbox on an {architecture} machine"
        );
    }
    let mut tree = Tree::default();
    for (tool, package) in TOOLBOX_TOOLS {
        let path = system_tool(tool)
            .with_context(|| format!("{tool} is missing: apt-get install {package} (scripts/deps does)"))?;
        tree.add(&path)?;
        tree.add_libraries(&path)?;
    }
    tree.files.insert("usr/bin/busybox".into(), busybox.to_owned());
    tree.add_libraries(busybox)?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        let real = |d: &str| {
            let p = format!("{d}/{applet}");
            tree.files.contains_key(&p) || tree.links.contains_key(&p)
        };
        if !real("usr/bin") && !real("usr/sbin") {
            tree.links.insert(format!("usr/bin/{applet}"), "busybox".into());
        }
    }
    for f in TERMINFO.iter().chain(&["/etc/services", "/etc/protocols"]) {
        if Path::new(f).exists() {
            tree.add(Path::new(f))?;
        }
    }
    let mut spec = agent_spec(name, binary, architecture);
    spec.files.extend(tree.files);
    spec.links.extend(tree.links);
    spec.links
        .extend(MERGED.iter().map(|d| (d.to_string(), format!("usr/{d}"))));
    // tcpdump drops to its own user after opening the capture.
    spec.texts = vec![
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
             tcpdump:x:102:105::/nonexistent:/usr/sbin/nologin\n"
                .into(),
        ),
        (
            "etc/group",
            "root:x:0:\nnogroup:x:65534:\ntcpdump:x:105:\n".into(),
        ),
        (
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n".into(),
        ),
    ];
    spec.dirs = vec!["tmp", "root", "proc", "sys", "dev"];
    Ok(spec)
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
    for (dest, text) in &spec.texts {
        let d = rootfs.join(dest);
        std::fs::create_dir_all(d.parent().expect("parent"))?;
        std::fs::write(&d, text)?;
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
