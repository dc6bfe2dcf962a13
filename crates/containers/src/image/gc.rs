//! Garbage collection of blobs and snapshots, the store lock that keeps it
//! away from in-flight pulls, and the rollback of failed pulls.
//!
//! Upstream counterpart: containerd's `gc` package and leases. Because the
//! agent and `rkube ctr` may open the same store from different processes,
//! the lock is an `flock` on `<root>/lock`: pulls and imports hold it
//! shared, remove/prune (and rollbacks) exclusive. Holding it exclusively
//! means no pull anywhere is in flight, so deleting whatever no image
//! record references can never take content from under one. A failed pull
//! rolls back exactly what it created, under the exclusive lock, sparing
//! anything an image record references by then.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::content::{self, ContentStore};
use super::oci::Digest;
use super::store::{self, Image, ImageStore};
use super::unpack::{self, Snapshots};

/// Errors from locking and collecting content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("garbage collection: {0}")]
    Content(#[from] content::Error),
    #[error("garbage collection: {0}")]
    Snapshot(#[from] unpack::Error),
    #[error("garbage collection: {0}")]
    Store(#[from] store::Error),
    #[error("lock image store {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("lock image store: blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What a collection (or a rollback) deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
}

/// The store-wide reader/writer lock, shared across processes.
#[derive(Debug, Clone)]
pub struct StoreLock {
    path: PathBuf,
}

/// A held lock; released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct LockGuard(#[allow(dead_code)] File);

impl StoreLock {
    pub fn open(root: &Path) -> Result<StoreLock, Error> {
        let path = root.join("lock");
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| Error::Lock {
                path: path.clone(),
                source,
            })?;
        Ok(StoreLock { path })
    }

    /// Held by pulls and imports: many at once.
    pub async fn shared(&self) -> Result<LockGuard, Error> {
        self.acquire(libc::LOCK_SH).await
    }

    /// Held by remove, prune and rollbacks: alone.
    pub async fn exclusive(&self) -> Result<LockGuard, Error> {
        self.acquire(libc::LOCK_EX).await
    }

    async fn acquire(&self, how: libc::c_int) -> Result<LockGuard, Error> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let lock_err = |source| Error::Lock {
                path: path.clone(),
                source,
            };
            // Each guard opens its own file description, so flock also
            // orders operations within this process.
            let file = File::options().append(true).open(&path).map_err(lock_err)?;
            loop {
                // SAFETY: the descriptor belongs to `file`, which is alive
                // for the call; flock has no memory arguments.
                let rc = unsafe { libc::flock(file.as_raw_fd(), how) };
                if rc == 0 {
                    return Ok(LockGuard(file));
                }
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(lock_err(err));
                }
            }
        })
        .await?
    }
}

/// Something a pull wrote that did not exist before.
#[derive(Debug, Clone)]
pub enum Created {
    Blob(Digest),
    Snapshot(Digest),
}

/// What one pull created, so a failure can undo it.
#[derive(Debug, Default)]
pub struct Rollback {
    created: Mutex<Vec<Created>>,
}

impl Rollback {
    pub fn created(&self, c: Created) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
    }

    /// Deletes what was created unless an image record references it.
    /// The caller must hold the exclusive store lock.
    pub fn roll_back(
        self,
        _exclusive: &LockGuard,
        content: &ContentStore,
        snapshots: &Snapshots,
        images: &ImageStore,
    ) -> Result<PruneReport, Error> {
        let (blobs, snaps) = referenced(&images.list()?);
        let mut report = PruneReport::default();
        for c in self.created.into_inner().unwrap_or_else(|e| e.into_inner()) {
            match c {
                Created::Blob(d) if !blobs.contains(&d) => {
                    content.remove(&d)?;
                    report.blobs.push(d);
                }
                Created::Snapshot(c) if !snaps.contains(&c) => {
                    snapshots.remove(&c)?;
                    report.snapshots.push(c);
                }
                _ => {}
            }
        }
        Ok(report)
    }
}

/// Blobs and snapshots the image records reference.
fn referenced(images: &[Image]) -> (HashSet<Digest>, HashSet<Digest>) {
    let mut blobs = HashSet::new();
    let mut snaps = HashSet::new();
    for i in images {
        blobs.extend([
            i.digest.clone(),
            i.manifest_digest.clone(),
            i.config_digest.clone(),
        ]);
        blobs.extend(i.layers.iter().map(|l| l.digest.clone()));
        snaps.extend(i.layers.iter().map(|l| l.chain_id.clone()));
    }
    (blobs, snaps)
}

/// Deletes unreferenced content: everything (prune), or only what `only`
/// (a just-removed image) used. Also clears leftovers of interrupted
/// downloads and unpacks, which under the exclusive lock belong to no one.
pub fn collect(
    _exclusive: &LockGuard,
    content: &ContentStore,
    snapshots: &Snapshots,
    images: &ImageStore,
    only: Option<&Image>,
) -> Result<PruneReport, Error> {
    content.clean_ingest()?;
    let (blobs, snaps) = referenced(&images.list()?);
    let (candidate_blobs, candidate_snaps) = match only {
        Some(i) => {
            let mut b = vec![
                i.digest.clone(),
                i.manifest_digest.clone(),
                i.config_digest.clone(),
            ];
            b.extend(i.layers.iter().map(|l| l.digest.clone()));
            (b, i.layers.iter().map(|l| l.chain_id.clone()).collect())
        }
        None => (content.list()?, snapshots.list(true)?),
    };
    let mut report = PruneReport::default();
    for d in candidate_blobs {
        if !blobs.contains(&d) && content.contains(&d) && !report.blobs.contains(&d) {
            content.remove(&d)?;
            report.blobs.push(d);
        }
    }
    for c in candidate_snaps {
        if !snaps.contains(&c) && snapshots.contains(&c) && !report.snapshots.contains(&c) {
            snapshots.remove(&c)?;
            report.snapshots.push(c);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rollback_spares_what_images_reference() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let images = ImageStore::open(dir.path()).unwrap();
        let mine = content.write_all(None, b"mine").unwrap();
        let used = content.write_all(None, b"used").unwrap();
        images
            .put(&Image {
                name: "x".into(),
                digest: used.clone(),
                manifest_digest: used.clone(),
                config_digest: used.clone(),
                layers: vec![],
                size: 0,
                created: 0,
            })
            .unwrap();
        let rollback = Rollback::default();
        rollback.created(Created::Blob(mine.clone()));
        rollback.created(Created::Blob(used.clone()));
        let lock = StoreLock::open(dir.path()).unwrap();
        let guard = lock.exclusive().await.unwrap();
        let report = rollback
            .roll_back(&guard, &content, &snapshots, &images)
            .unwrap();
        assert_eq!(report.blobs, vec![mine.clone()]);
        assert!(!content.contains(&mine) && content.contains(&used));
    }

    #[tokio::test]
    async fn exclusive_waits_for_shared_holders() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StoreLock::open(dir.path()).unwrap();
        let a = lock.shared().await.unwrap();
        let _b = lock.shared().await.unwrap(); // shared holders coexist
        let l2 = lock.clone();
        let mut exclusive = tokio::spawn(async move { l2.exclusive().await.map(|_| ()) });
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut exclusive).await;
        assert!(
            waited.is_err(),
            "exclusive must wait while shared locks are held"
        );
        drop(a);
        drop(_b);
        tokio::time::timeout(std::time::Duration::from_secs(10), exclusive)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
