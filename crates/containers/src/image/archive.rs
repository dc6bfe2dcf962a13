//! Image archives: import of OCI image-layout tars and `docker save` tars,
//! export to an OCI image-layout tar.
//!
//! Upstream counterparts: containerd `images/archive` (importer.go,
//! exporter.go) and the image-spec image-layout.md. Import reads the tar
//! twice — first the small index files, then the blobs they name — so that
//! only referenced files enter the content store and every blob is hashed
//! on the way in (OCI blob names are digests and are checked as such).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::content::{self, ContentStore};
use super::oci::{self, Descriptor, Digest, Document, Index, Manifest};
use super::reference::Reference;
use super::store::Image;

/// Annotation containerd and rkube use for the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's annotation, which tools fill with a tag or a full reference.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const METADATA_LIMIT: u64 = 16 << 20;

/// Errors from reading or writing archives.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("archive {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("archive {0}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)")]
    UnknownFormat(PathBuf),
    #[error("archive {path}: {file} is referenced but missing")]
    Missing { path: PathBuf, file: String },
    #[error("archive {path}: {file} is larger than {METADATA_LIMIT} bytes")]
    TooLarge { path: PathBuf, file: String },
    #[error("archive {path}: {source}")]
    Content {
        path: PathBuf,
        #[source]
        source: content::Error,
    },
    #[error("archive {path}: {source}")]
    Document {
        path: PathBuf,
        #[source]
        source: oci::Error,
    },
    #[error("archive {path}: index {index} has no linux/amd64 manifest")]
    NoPlatform { path: PathBuf, index: Digest },
}

/// An image found in an archive, its blobs now in the content store.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Reference string, or the digest when the archive names no image.
    pub name: String,
    /// What the name points at (may be an index).
    pub digest: Digest,
    /// The linux/amd64 manifest.
    pub manifest: Digest,
}

/// Opens an archive file, transparently un-gzipping it.
fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read>>, Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.into(),
        op: "open",
        source,
    })?;
    let mut r = BufReader::with_capacity(256 * 1024, file);
    let magic = r.fill_buf().map_err(|source| Error::Io {
        path: path.into(),
        op: "read",
        source,
    })?;
    let inner: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    };
    Ok(tar::Archive::new(inner))
}

fn entry_name(entry: &tar::Entry<'_, Box<dyn Read>>) -> Option<String> {
    let p = entry.path().ok()?;
    let s = p.to_string_lossy();
    Some(s.trim_start_matches("./").to_string())
}

/// Visits every regular file of the archive.
fn walk(
    path: &Path,
    mut visit: impl FnMut(&str, &mut tar::Entry<'_, Box<dyn Read>>) -> Result<(), Error>,
) -> Result<(), Error> {
    let tar_err = |source| Error::Io {
        path: path.into(),
        op: "read tar",
        source,
    };
    let mut archive = open(path)?;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        if let Some(name) = entry_name(&entry) {
            visit(&name, &mut entry)?;
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Imports every image in an archive into `content`.
pub fn import(path: &Path, content: &ContentStore) -> Result<Vec<Imported>, Error> {
    let mut meta: HashMap<String, Vec<u8>> = HashMap::new();
    walk(path, |name, entry| {
        if name == "index.json" || name == "manifest.json" {
            if entry.size() > METADATA_LIMIT {
                return Err(Error::TooLarge {
                    path: path.into(),
                    file: name.into(),
                });
            }
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(|source| Error::Io {
                path: path.into(),
                op: "read",
                source,
            })?;
            meta.insert(name.to_string(), buf);
        }
        Ok(())
    })?;
    let doc_err = |source| Error::Document {
        path: path.into(),
        source,
    };
    // Newer docker writes both files; the docker manifest carries the tags.
    if let Some(bytes) = meta.get("manifest.json") {
        let manifests: Vec<DockerManifest> =
            oci::parse("docker save manifest.json", bytes).map_err(doc_err)?;
        import_docker(path, content, &manifests)
    } else if let Some(bytes) = meta.get("index.json") {
        let index: Index = oci::parse("index.json", bytes).map_err(doc_err)?;
        import_oci(path, content, &index)
    } else {
        Err(Error::UnknownFormat(path.into()))
    }
}

/// Ingests the named archive files; returns name → (digest, size).
fn ingest(
    path: &Path,
    content: &ContentStore,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, (Digest, u64)>, Error> {
    let mut found = HashMap::new();
    walk(path, |name, entry| {
        // Under blobs/ the file name is the digest and must match.
        let named: Option<Digest> = name
            .strip_prefix("blobs/sha256/")
            .and_then(|h| format!("sha256:{h}").parse().ok());
        if named.is_none() && !wanted(name) {
            return Ok(());
        }
        let size = entry.size();
        let digest = match &named {
            Some(d) if content.contains(d) => d.clone(),
            _ => content
                .ingest(named.as_ref(), Some(size), entry)
                .map_err(|source| Error::Content {
                    path: path.into(),
                    source,
                })?,
        };
        found.insert(name.to_string(), (digest, size));
        Ok(())
    })?;
    Ok(found)
}

fn import_oci(path: &Path, content: &ContentStore, index: &Index) -> Result<Vec<Imported>, Error> {
    ingest(path, content, |_| false)?;
    let mut out = Vec::new();
    for desc in &index.manifests {
        let manifest = resolve(path, content, desc)?;
        out.push(Imported {
            name: image_name(desc),
            digest: desc.digest.clone(),
            manifest,
        });
    }
    Ok(out)
}

/// Follows an index to its linux/amd64 manifest.
fn resolve(path: &Path, content: &ContentStore, desc: &Descriptor) -> Result<Digest, Error> {
    let bytes = content
        .read(&desc.digest)
        .map_err(|_| missing(path, &desc.digest))?;
    match oci::parse_document(Some(&desc.media_type), &bytes).map_err(|source| Error::Document {
        path: path.into(),
        source,
    })? {
        Document::Manifest(_) => Ok(desc.digest.clone()),
        Document::Index(index) => match oci::select_platform(&index) {
            Some(d) => Ok(d.digest.clone()),
            None => Err(Error::NoPlatform {
                path: path.into(),
                index: desc.digest.clone(),
            }),
        },
    }
}

fn missing(path: &Path, digest: &Digest) -> Error {
    Error::Missing {
        path: path.into(),
        file: format!("blobs/sha256/{}", digest.hex()),
    }
}

/// The image name from index annotations; a bare tag (as skopeo writes)
/// names no repository, so such images are known by digest only.
fn image_name(desc: &Descriptor) -> String {
    if let Some(n) = desc.annotations.get(ANNOTATION_IMAGE_NAME) {
        return n.clone();
    }
    match desc.annotations.get(ANNOTATION_REF_NAME) {
        Some(n) if n.contains('/') || n.contains(':') => n.clone(),
        _ => desc.digest.to_string(),
    }
}

fn import_docker(
    path: &Path,
    content: &ContentStore,
    manifests: &[DockerManifest],
) -> Result<Vec<Imported>, Error> {
    let wanted: std::collections::HashSet<&str> = manifests
        .iter()
        .flat_map(|m| std::iter::once(m.config.as_str()).chain(m.layers.iter().map(String::as_str)))
        .map(|s| s.trim_start_matches("./"))
        .collect();
    let found = ingest(path, content, |name| wanted.contains(name))?;
    let lookup = |file: &str| {
        found
            .get(file.trim_start_matches("./"))
            .cloned()
            .ok_or_else(|| Error::Missing {
                path: path.into(),
                file: file.into(),
            })
    };
    let mut out = Vec::new();
    for m in manifests {
        let (config, config_size) = lookup(&m.config)?;
        let mut layers = Vec::new();
        for l in &m.layers {
            let (digest, size) = lookup(l)?;
            // Media type is nominal: unpack sniffs gzip vs plain tar.
            layers.push(Descriptor::new(oci::OCI_LAYER_TAR, digest, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            config: Descriptor::new(oci::OCI_CONFIG, config, config_size),
            layers,
        };
        let bytes = serde_json::to_vec(&manifest).expect("manifests always serialise");
        let digest = content
            .write_all(None, &bytes)
            .map_err(|source| Error::Content {
                path: path.into(),
                source,
            })?;
        let tags = m.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            out.push(Imported {
                name: digest.to_string(),
                digest: digest.clone(),
                manifest: digest.clone(),
            });
        }
        for tag in tags {
            out.push(Imported {
                name: tag,
                digest: digest.clone(),
                manifest: digest.clone(),
            });
        }
    }
    Ok(out)
}

/// Writes images as one OCI image-layout tar (blobs shared between images
/// are written once).
pub fn export(images: &[Image], content: &ContentStore, path: &Path) -> Result<(), Error> {
    let io_err = |op| {
        move |source| Error::Io {
            path: path.into(),
            op,
            source,
        }
    };
    let file = File::create(path).map_err(io_err("create"))?;
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file));
    let mut blobs: BTreeMap<Digest, ()> = BTreeMap::new();
    let mut manifests = Vec::new();
    for image in images {
        let bytes = content
            .read(&image.manifest_digest)
            .map_err(|source| Error::Content {
                path: path.into(),
                source,
            })?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| oci::OCI_MANIFEST.to_string());
        let mut desc = Descriptor::new(
            &media_type,
            image.manifest_digest.clone(),
            bytes.len() as u64,
        );
        desc.annotations
            .insert(ANNOTATION_IMAGE_NAME.into(), image.name.clone());
        if let Some(tag) = tag_of(&image.name) {
            desc.annotations.insert(ANNOTATION_REF_NAME.into(), tag);
        }
        manifests.push(desc);
        blobs.insert(image.manifest_digest.clone(), ());
        blobs.insert(image.config_digest.clone(), ());
        for l in &image.layers {
            blobs.insert(l.digest.clone(), ());
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests,
    };
    let index = serde_json::to_vec(&index).expect("indexes always serialise");
    append(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(io_err("write"))?;
    append(&mut tar, "index.json", &index).map_err(io_err("write"))?;
    for digest in blobs.keys() {
        let mut blob = content.open_blob(digest).map_err(|source| Error::Content {
            path: path.into(),
            source,
        })?;
        let size = blob.metadata().map_err(io_err("stat blob"))?.len();
        let mut header = file_header(size);
        tar.append_data(
            &mut header,
            format!("blobs/sha256/{}", digest.hex()),
            &mut blob,
        )
        .map_err(io_err("write"))?;
    }
    let mut out = tar.into_inner().map_err(io_err("finish"))?;
    io::Write::flush(&mut out).map_err(io_err("flush"))?;
    out.get_ref().sync_all().map_err(io_err("sync"))?;
    Ok(())
}

/// The tag of an image name, for OCI's ref.name annotation; none for
/// digest-only names and names that are not references.
pub fn tag_of(name: &str) -> Option<String> {
    name.parse::<Reference>().ok().and_then(|r| r.tag)
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append<W: io::Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = file_header(data.len() as u64);
    tar.append_data(&mut h, name, data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tags_of_names() {
        assert_eq!(super::tag_of("a/b:1").as_deref(), Some("1"));
        assert_eq!(super::tag_of("localhost:5000/a").as_deref(), Some("latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(super::tag_of(&format!("a/b@{digest}")), None);
        assert_eq!(super::tag_of(&digest), None);
    }
}
