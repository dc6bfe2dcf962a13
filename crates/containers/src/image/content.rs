//! The content-addressed blob store: `<root>/content/blobs/sha256/<hex>`.
//!
//! Upstream counterpart: containerd `content/local` (ingest directory,
//! commit by rename). Every blob is written to a temporary file in
//! `<root>/content/ingest/`, hashed while it is written, fsynced, and only
//! renamed into place when its digest (and size, when known) match — so a
//! tampered or half-downloaded blob can never be seen under its name.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::oci::Digest;

/// Errors from the blob store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob {expected} digest mismatch: got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest} size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is larger than the {limit} bytes allowed here")]
    TooLarge { digest: String, limit: u64 },
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("content store {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A blob store rooted at `<root>/content`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<ContentStore, Error> {
        let blobs = root.join("content/blobs/sha256");
        let ingest = root.join("content/ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where a blob lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Reads a whole blob; callers use it for small documents only.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(digest.clone()),
            _ => Error::Io {
                op: "read",
                path,
                source: e,
            },
        })
    }

    /// Opens a blob for streaming.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, Error> {
        let path = self.path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(digest.clone()),
            _ => Error::Io {
                op: "open",
                path,
                source: e,
            },
        })
    }

    /// Stores bytes whose digest the caller expects (or `None` to accept
    /// whatever they hash to); returns the digest.
    pub fn write_all(&self, expected: Option<&Digest>, bytes: &[u8]) -> Result<Digest, Error> {
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(io_err("write", &self.ingest))?;
        w.commit(expected, Some(bytes.len() as u64))
    }

    /// Starts a new ingest.
    pub fn writer(&self) -> Result<BlobWriter, Error> {
        let file = tempfile::NamedTempFile::new_in(&self.ingest)
            .map_err(io_err("create ingest in", &self.ingest))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            size: 0,
            blobs: self.blobs.clone(),
        })
    }

    /// Copies a reader into the store, verifying against `expected`.
    pub fn ingest(
        &self,
        expected: Option<&Digest>,
        size: Option<u64>,
        mut r: impl Read,
    ) -> Result<Digest, Error> {
        let mut w = self.writer()?;
        io::copy(&mut r, &mut w).map_err(io_err("copy into", &self.ingest))?;
        w.commit(expected, size)
    }

    /// Deletes a blob; a missing blob is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), Error> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
                op: "remove",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every blob in the store. Names that are not digests (stray files)
    /// are skipped rather than failing the listing.
    pub fn list(&self) -> Result<Vec<Digest>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).map_err(io_err("list", &self.blobs))? {
            let entry = entry.map_err(io_err("list", &self.blobs))?;
            if let Some(name) = entry.file_name().to_str() {
                if let Ok(d) = format!("sha256:{name}").parse() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes leftovers of interrupted ingests (e.g. after a crash).
    pub fn clean_ingest(&self) -> Result<(), Error> {
        for entry in fs::read_dir(&self.ingest).map_err(io_err("list", &self.ingest))? {
            let path = entry.map_err(io_err("list", &self.ingest))?.path();
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
        Ok(())
    }
}

/// An in-progress blob: bytes go to a temp file and through sha256.
/// Dropping it without `commit` deletes the temp file.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    blobs: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies and publishes the blob. On any mismatch the temp file is
    /// removed and nothing appears under the expected name.
    pub fn commit(self, expected: Option<&Digest>, size: Option<u64>) -> Result<Digest, Error> {
        let actual = Digest::from_sha256(self.hasher.finalize().as_slice());
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if let Some(want) = size {
            if want != self.size {
                return Err(Error::SizeMismatch {
                    digest: actual,
                    expected: want,
                    actual: self.size,
                });
            }
        }
        let target = self.blobs.join(actual.hex());
        let tmp = self.file.path().to_path_buf();
        // fsync before rename: after a crash the name must never point at
        // a file whose bytes did not all reach the disk.
        self.file
            .as_file()
            .sync_all()
            .map_err(io_err("sync", &tmp))?;
        self.file.persist(&target).map_err(|e| Error::Io {
            op: "publish",
            path: target.clone(),
            source: e.error,
        })?;
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_blobs_are_published_and_bad_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = Digest::of(b"hello");
        assert_eq!(store.write_all(Some(&good), b"hello").unwrap(), good);
        assert_eq!(store.read(&good).unwrap(), b"hello");

        let err = store.write_all(Some(&good), b"tampered").unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("blob {good} digest mismatch: got sha256:")),
            "{err}"
        );
        let wanted = Digest::of(b"other");
        assert!(store.write_all(Some(&wanted), b"tampered").is_err());
        assert!(!store.contains(&wanted));
        assert!(!store.contains(&Digest::of(b"tampered")));
        assert_eq!(
            fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(store.list().unwrap(), vec![good.clone()]);

        let err = store.ingest(None, Some(99), &b"hello"[..]).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        store.remove(&good).unwrap();
        assert!(matches!(store.read(&good), Err(Error::NotFound(_))));
    }
}
