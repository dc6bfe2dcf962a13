//! Image metadata: which name points at which manifest, config and layer
//! snapshots. One JSON file per image under `<root>/images/`.
//!
//! Upstream counterpart: containerd's image store (`metadata/images.go`),
//! kept as plain files: the set of images on a node is small, and files
//! written by temp + rename survive crashes without a database.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::oci::Digest;

/// Errors from the image metadata store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {0} not found")]
    NotFound(String),
    #[error("image store {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image record {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// One layer of an image as the runtime needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The (usually compressed) blob in the content store.
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Names the snapshot directory of the stack up to this layer.
    pub chain_id: Digest,
}

/// An image known to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The digest the name resolved to (an index's digest for multi-arch
    /// images): what Kubernetes reports as the repo digest.
    pub digest: Digest,
    /// The linux/amd64 manifest actually used.
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    /// Base layer first.
    pub layers: Vec<Layer>,
    /// Bytes of manifest, config and layer blobs.
    pub size: u64,
    /// Seconds since the epoch when the record was written.
    pub created: u64,
}

/// The directory of image records.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        let dir = root.join("images");
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(ImageStore { dir })
    }

    /// Record files are named by the hash of the image name, so any name
    /// is a safe file name.
    fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", Digest::of(name.as_bytes()).hex()))
    }

    pub fn get(&self, name: &str) -> Result<Image, Error> {
        let path = self.path(name);
        let bytes = fs::read(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => Error::NotFound(name.to_string()),
            _ => Error::Io {
                op: "read",
                path: path.clone(),
                source,
            },
        })?;
        serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt { path, source })
    }

    /// Creates or replaces the record for `image.name`, atomically.
    pub fn put(&self, image: &Image) -> Result<(), Error> {
        let path = self.path(&image.name);
        let io = |op, source| Error::Io {
            op,
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(image).expect("image records always serialise");
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| io("create", e))?;
        io::Write::write_all(&mut tmp, &bytes).map_err(|e| io("write", e))?;
        tmp.as_file().sync_all().map_err(|e| io("sync", e))?;
        tmp.persist(&path).map_err(|e| io("publish", e.error))?;
        Ok(())
    }

    pub fn remove(&self, name: &str) -> Result<Image, Error> {
        let image = self.get(name)?;
        let path = self.path(name);
        fs::remove_file(&path).map_err(|source| Error::Io {
            op: "remove",
            path,
            source,
        })?;
        Ok(image)
    }

    /// Every image, sorted by name. Unreadable records are errors rather
    /// than silently hidden: prune must never act on a partial view.
    pub fn list(&self) -> Result<Vec<Image>, Error> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(|source| Error::Io {
            op: "list",
            path: self.dir.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Io {
                    op: "list",
                    path: self.dir.clone(),
                    source,
                })?
                .path();
            if path.extension().is_some_and(|e| e == "json") {
                let bytes = fs::read(&path).map_err(|source| Error::Io {
                    op: "read",
                    path: path.clone(),
                    source,
                })?;
                out.push(
                    serde_json::from_slice(&bytes)
                        .map_err(|source| Error::Corrupt { path, source })?,
                );
            }
        }
        out.sort_by(|a: &Image, b: &Image| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str) -> Image {
        let d = Digest::of(name.as_bytes());
        Image {
            name: name.into(),
            digest: d.clone(),
            manifest_digest: d.clone(),
            config_digest: d.clone(),
            layers: vec![],
            size: 1,
            created: 0,
        }
    }

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        store.put(&image("docker.io/library/b:latest")).unwrap();
        store.put(&image("docker.io/library/a:latest")).unwrap();
        assert_eq!(
            store.get("docker.io/library/a:latest").unwrap(),
            image("docker.io/library/a:latest")
        );
        let names: Vec<_> = store.list().unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(
            names,
            ["docker.io/library/a:latest", "docker.io/library/b:latest"]
        );
        store.remove("docker.io/library/a:latest").unwrap();
        assert!(matches!(
            store.get("docker.io/library/a:latest"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(store.remove("nope"), Err(Error::NotFound(_))));
    }

    #[test]
    fn corrupt_records_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("images/bad.json"), b"{").unwrap();
        assert!(matches!(store.list(), Err(Error::Corrupt { .. })));
    }
}
