//! A small image builder for tests and benchmarks across rkube: layers from
//! a directory or an explicit list of entries (including whiteouts), an
//! image config, and output as an OCI archive, a `docker save` archive, or
//! a push to a registry.
//!
//! Upstream counterpart: none in Kubernetes itself; it does what the e2e
//! suites get from prebuilt images, so rkube's tests need no network and
//! no Docker. Outputs are deterministic (sorted entries, mtime 0), so the
//! same input always yields the same digests.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use flate2::write::GzEncoder;

use super::archive::{tag_of, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use super::client::{self, Client};
use super::oci::{
    self, Descriptor, Digest, ImageConfig, Index, Manifest, Platform, RootFs, RunConfig,
};
use super::reference::{self, Reference};

/// Errors from building or pushing a test image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("build image: {0}")]
    Io(#[from] io::Error),
    #[error("push image: {0}")]
    Push(#[from] client::Error),
    #[error(transparent)]
    Reference(#[from] reference::Error),
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Bytes),
    Symlink(String),
    Hardlink(String),
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The entries of one layer, written in the order given.
#[derive(Debug, Clone, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    fn push(mut self, path: &str, kind: Kind, mode: u32) -> Self {
        let path = path.trim_start_matches('/').to_string();
        self.entries.push(Entry {
            path,
            kind,
            mode,
            uid: 0,
            gid: 0,
            xattrs: Vec::new(),
        });
        self
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(path, Kind::Dir, mode)
    }

    pub fn file(self, path: &str, data: impl Into<Bytes>, mode: u32) -> Self {
        self.push(path, Kind::File(data.into()), mode)
    }

    /// Sets the owner of the entry added last.
    pub fn owned_by(mut self, uid: u64, gid: u64) -> Self {
        if let Some(e) = self.entries.last_mut() {
            e.uid = uid;
            e.gid = gid;
        }
        self
    }

    /// Adds an extended attribute (a PAX `SCHILY.xattr.` record) to the
    /// entry added last.
    pub fn xattr(mut self, key: &str, value: &[u8]) -> Self {
        if let Some(e) = self.entries.last_mut() {
            e.xattrs.push((key.to_string(), value.to_vec()));
        }
        self
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, Kind::Symlink(target.into()), 0o777)
    }

    /// A hard link to `target`, an earlier entry of this layer.
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(
            path,
            Kind::Hardlink(target.trim_start_matches('/').into()),
            0o644,
        )
    }

    /// Deletes `path` from lower layers (OCI `.wh.<name>` entry).
    pub fn whiteout(self, path: &str) -> Self {
        let p = Path::new(path.trim_start_matches('/'));
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let wh = p.with_file_name(format!(".wh.{name}"));
        self.push(&wh.to_string_lossy(), Kind::File(Bytes::new()), 0o644)
    }

    /// Hides everything lower layers have in `dir` (OCI opaque whiteout).
    pub fn opaque(self, dir: &str) -> Self {
        let p = Path::new(dir.trim_start_matches('/')).join(".wh..wh..opq");
        self.push(&p.to_string_lossy(), Kind::File(Bytes::new()), 0o644)
    }

    /// Every file, directory and symlink under `root`, sorted; files that
    /// share an inode become hard links, as `docker build` would write.
    pub fn from_dir(root: &Path) -> io::Result<LayerBuilder> {
        // Collect first, then sort, so parents precede children and the
        // first path of a hard-linked inode (in tar order) is the file.
        let mut found = Vec::new();
        let mut dirs = vec![PathBuf::new()];
        while let Some(rel) = dirs.pop() {
            for child in fs::read_dir(root.join(&rel))? {
                let child = child?;
                let rel_child = rel.join(child.file_name());
                let meta = fs::symlink_metadata(child.path())?;
                if meta.is_dir() {
                    dirs.push(rel_child.clone());
                }
                found.push((rel_child.to_string_lossy().into_owned(), child.path(), meta));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut layer = LayerBuilder::new();
        let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
        for (name, path, meta) in found {
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink(fs::read_link(&path)?.to_string_lossy().into_owned())
            } else if ft.is_file() {
                match inodes.get(&(meta.dev(), meta.ino())) {
                    Some(first) if meta.nlink() > 1 => Kind::Hardlink(first.clone()),
                    _ => {
                        inodes.insert((meta.dev(), meta.ino()), name.clone());
                        Kind::File(fs::read(&path)?.into())
                    }
                }
            } else {
                continue; // sockets, devices: not needed in test images
            };
            layer.entries.push(Entry {
                path: name,
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid() as u64,
                gid: meta.gid() as u64,
                xattrs: Vec::new(),
            });
        }
        Ok(layer)
    }

    /// A minimal busybox root filesystem: `/bin/busybox` (e.g. Debian's
    /// busybox-static) plus applet symlinks, `/etc/passwd` and `/etc/group`.
    pub fn busybox(busybox: &Path) -> io::Result<LayerBuilder> {
        let binary = fs::read(busybox)?;
        let mut layer = LayerBuilder::new()
            .dir("bin", 0o755)
            .file("bin/busybox", binary, 0o755);
        for applet in BUSYBOX_APPLETS {
            layer = layer.symlink(&format!("bin/{applet}"), "busybox");
        }
        Ok(layer
            .dir("etc", 0o755)
            .file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644)
            .file("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644)
            .dir("root", 0o700)
            .dir("tmp", 0o1777))
    }

    /// The layer as an uncompressed tar.
    pub fn tar(&self) -> io::Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        for e in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(0);
            if !e.xattrs.is_empty() {
                append_pax(&mut b, &e.path, &e.xattrs)?;
            }
            match &e.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{}/", e.path), io::empty())?;
                }
                Kind::File(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, &e.path, &data[..])?;
                }
                Kind::Symlink(target) | Kind::Hardlink(target) => {
                    let t = if matches!(e.kind, Kind::Symlink(_)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    };
                    h.set_entry_type(t);
                    h.set_size(0);
                    b.append_link(&mut h, &e.path, target)?;
                }
            }
        }
        b.into_inner()
    }
}

/// Writes a PAX extended header carrying `xattrs` for the next entry.
/// Each record is "<len> SCHILY.xattr.<key>=<value>\n", where <len>
/// counts the whole record including its own digits.
fn append_pax(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    xattrs: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in xattrs {
        // " SCHILY.xattr.<key>=<value>\n" without the length digits.
        let body = 1 + "SCHILY.xattr.".len() + key.len() + 1 + value.len() + 1;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} SCHILY.xattr.{key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    let name: String = format!("PaxHeaders/{path}").chars().take(99).collect();
    b.append_data(&mut h, name, &data[..])
}

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "sleep", "true", "false", "env", "id", "ps", "mkdir", "rm", "cp",
    "mv", "ln", "touch", "grep", "sed", "head", "tail", "wc", "hostname", "mount", "umount",
    "test", "[", "printf", "pwd", "stat", "date", "kill", "wget", "nc", "ip", "ifconfig",
    "nslookup", "uname", "whoami", "chmod", "chown", "find", "dd", "df", "du", "tr", "sort",
    "uniq", "cut", "xargs", "tee", "vi", "sync", "readlink", "basename", "dirname", "seq", "yes",
    "timeout", "top", "free", "ping",
];

/// Whether layers are stored gzipped (as registries usually hold them) or
/// as plain tars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// Builds an image from layers and a run config.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<LayerBuilder>,
    config: RunConfig,
    architecture: String,
    compression: Compression,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            config: RunConfig::default(),
            architecture: "amd64".into(),
            compression: Compression::Gzip,
        }
    }
}

impl ImageBuilder {
    pub fn new() -> ImageBuilder {
        ImageBuilder::default()
    }

    pub fn layer(mut self, layer: LayerBuilder) -> Self {
        self.layers.push(layer);
        self
    }

    pub fn config(mut self, config: RunConfig) -> Self {
        self.config = config;
        self
    }

    pub fn architecture(mut self, arch: &str) -> Self {
        self.architecture = arch.into();
        self
    }

    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    pub fn build(&self) -> Result<BuiltImage, Error> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for l in &self.layers {
            let tar = l.tar()?;
            diff_ids.push(Digest::of(&tar));
            // Level 6, as docker and buildkit write layers: incompressible
            // data then becomes stored blocks, as in real images.
            let (media_type, blob) = match self.compression {
                Compression::None => (oci::OCI_LAYER_TAR, tar),
                Compression::Gzip => {
                    let mut gz = GzEncoder::new(
                        Vec::with_capacity(tar.len() / 2),
                        flate2::Compression::default(),
                    );
                    io::Write::write_all(&mut gz, &tar)?;
                    (oci::OCI_LAYER_GZIP, gz.finish()?)
                }
            };
            layers.push((
                Descriptor::new(media_type, Digest::of(&blob), blob.len() as u64),
                Bytes::from(blob),
            ));
        }
        let config = ImageConfig {
            created: Some("1970-01-01T00:00:00Z".into()),
            architecture: self.architecture.clone(),
            os: "linux".into(),
            config: self.config.clone(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids,
            },
        };
        let config = Bytes::from(serde_json::to_vec(&config).expect("configs always serialise"));
        let config_desc =
            Descriptor::new(oci::OCI_CONFIG, Digest::of(&config), config.len() as u64);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            config: config_desc.clone(),
            layers: layers.iter().map(|(d, _)| d.clone()).collect(),
        };
        let manifest =
            Bytes::from(serde_json::to_vec(&manifest).expect("manifests always serialise"));
        Ok(BuiltImage {
            manifest_digest: Digest::of(&manifest),
            manifest,
            config_desc,
            config,
            layers,
            platform: Platform {
                architecture: self.architecture.clone(),
                os: "linux".into(),
                variant: None,
            },
        })
    }
}

/// A built image: every blob in memory.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub manifest: Bytes,
    pub manifest_digest: Digest,
    pub config_desc: Descriptor,
    pub config: Bytes,
    pub layers: Vec<(Descriptor, Bytes)>,
    pub platform: Platform,
}

impl BuiltImage {
    /// Descriptor of the manifest, with its platform, for an index.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            platform: Some(self.platform.clone()),
            ..Descriptor::new(
                oci::OCI_MANIFEST,
                self.manifest_digest.clone(),
                self.manifest.len() as u64,
            )
        }
    }

    fn blobs(&self) -> Vec<(&Digest, &Bytes)> {
        let mut out = vec![
            (&self.manifest_digest, &self.manifest),
            (&self.config_desc.digest, &self.config),
        ];
        out.extend(self.layers.iter().map(|(d, b)| (&d.digest, b)));
        out
    }

    /// An OCI image-layout tar naming the image `name`.
    pub fn write_oci_archive(&self, name: &str, path: &Path) -> Result<(), Error> {
        let mut desc = self.descriptor();
        desc.annotations = BTreeMap::from([(ANNOTATION_IMAGE_NAME.to_string(), name.to_string())]);
        if let Some(tag) = tag_of(name) {
            desc.annotations.insert(ANNOTATION_REF_NAME.into(), tag);
        }
        let index = Index {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            manifests: vec![desc],
        };
        let mut files: Vec<(String, Bytes)> = vec![
            (
                "oci-layout".into(),
                Bytes::from_static(br#"{"imageLayoutVersion":"1.0.0"}"#),
            ),
            (
                "index.json".into(),
                serde_json::to_vec(&index)
                    .expect("indexes always serialise")
                    .into(),
            ),
        ];
        files.extend(
            self.blobs()
                .into_iter()
                .map(|(d, b)| (format!("blobs/sha256/{}", d.hex()), b.clone())),
        );
        write_tar(path, &files)
    }

    /// A `docker save` archive in the classic layout: `manifest.json`,
    /// `repositories`, `<config hex>.json`, `<n>/layer.tar` (uncompressed).
    pub fn write_docker_archive(&self, repo_tag: &str, path: &Path) -> Result<(), Error> {
        let mut files: Vec<(String, Bytes)> = Vec::new();
        let mut layer_paths = Vec::new();
        for (i, (desc, blob)) in self.layers.iter().enumerate() {
            let tar = if desc.media_type == oci::OCI_LAYER_GZIP {
                let mut out = Vec::new();
                io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&blob[..]), &mut out)?;
                Bytes::from(out)
            } else {
                blob.clone()
            };
            let dir = format!("{:064x}", i + 1);
            layer_paths.push(format!("{dir}/layer.tar"));
            files.push((format!("{dir}/VERSION"), Bytes::from_static(b"1.0")));
            files.push((format!("{dir}/layer.tar"), tar));
        }
        let config_name = format!("{}.json", self.config_desc.digest.hex());
        files.push((config_name.clone(), self.config.clone()));
        let manifest = serde_json::json!([{ "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_paths }]);
        files.push((
            "manifest.json".into(),
            serde_json::to_vec(&manifest)
                .expect("json values serialise")
                .into(),
        ));
        if let Some((repo, tag)) = repo_tag.rsplit_once(':') {
            let last = layer_paths
                .last()
                .map(|p| p.trim_end_matches("/layer.tar").to_string())
                .unwrap_or_default();
            let repos = serde_json::json!({ repo: { tag: last } });
            files.push((
                "repositories".into(),
                serde_json::to_vec(&repos)
                    .expect("json values serialise")
                    .into(),
            ));
        }
        write_tar(path, &files)
    }

    /// Pushes blobs (skipping ones the registry has) and the manifest,
    /// tagged as `reference` says.
    pub async fn push(&self, client: &Client, reference: &str) -> Result<(), Error> {
        let r: Reference = reference.parse()?;
        let repo = first_repository(client, &r)?;
        for (digest, blob) in self.blobs().into_iter().skip(1) {
            if !repo.blob_exists(digest).await? {
                repo.upload_blob(digest, blob.clone()).await?;
            }
        }
        repo.put_manifest(&r.object(), oci::OCI_MANIFEST, self.manifest.clone())
            .await?;
        Ok(())
    }
}

fn first_repository(client: &Client, r: &Reference) -> Result<client::Repository, Error> {
    let mut repos = client.repositories(r, None, true)?;
    Ok(repos.remove(0))
}

/// Pushes several single-platform images and an index over them under
/// `reference`'s tag; returns the index digest.
pub async fn push_index(
    client: &Client,
    reference: &str,
    images: &[&BuiltImage],
) -> Result<Digest, Error> {
    let r: Reference = reference.parse()?;
    for image in images {
        image
            .push(
                client,
                &r.with_digest(image.manifest_digest.clone()).to_string(),
            )
            .await?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: images.iter().map(|i| i.descriptor()).collect(),
    };
    let bytes = Bytes::from(serde_json::to_vec(&index).expect("indexes always serialise"));
    let digest = Digest::of(&bytes);
    let repo = first_repository(client, &r)?;
    repo.put_manifest(&r.object(), oci::OCI_INDEX, bytes)
        .await?;
    Ok(digest)
}

fn write_tar(path: &Path, files: &[(String, Bytes)]) -> Result<(), Error> {
    let mut b = tar::Builder::new(io::BufWriter::new(fs::File::create(path)?));
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &data[..])?;
    }
    io::Write::flush(&mut b.into_inner()?)?;
    Ok(())
}
