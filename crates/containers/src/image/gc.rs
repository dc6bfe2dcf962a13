//! Garbage collection of blobs and snapshots, and the leases that keep
//! in-flight pulls safe from it.
//!
//! Upstream counterpart: containerd's `gc` package and leases. Removal and
//! prune collect whatever no image record references. A pull holds a
//! lease on every digest it is about to use; when it fails it rolls back
//! exactly what it created itself, skipping anything an image record or
//! another live lease still needs — so a failed pull leaves nothing behind
//! and never takes content from under a concurrent one.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::content::{self, ContentStore};
use super::oci::Digest;
use super::store::{self, Image, ImageStore};
use super::unpack::{self, Snapshots};

/// Errors from collecting content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("garbage collection: {0}")]
    Content(#[from] content::Error),
    #[error("garbage collection: {0}")]
    Snapshot(#[from] unpack::Error),
    #[error("garbage collection: {0}")]
    Store(#[from] store::Error),
}

/// What a collection (or a rollback) deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: Vec<Digest>,
    pub snapshots: Vec<Digest>,
}

/// Something a pull wrote that did not exist before.
#[derive(Debug, Clone)]
pub enum Created {
    Blob(Digest),
    Snapshot(Digest),
}

/// Reference counts of digests (blobs and chain ids) held by live leases.
#[derive(Debug, Default)]
pub struct Leases {
    held: Mutex<HashMap<Digest, usize>>,
}

impl Leases {
    pub fn lease(&self) -> Lease<'_> {
        Lease {
            leases: self,
            keys: Mutex::new(Vec::new()),
            created: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One operation's hold on digests; released on drop.
pub struct Lease<'a> {
    leases: &'a Leases,
    keys: Mutex<Vec<Digest>>,
    created: Mutex<Vec<Created>>,
}

impl Lease<'_> {
    /// Holds more digests for the life of the lease.
    pub fn hold(&self, digests: impl IntoIterator<Item = Digest>) {
        let mut held = self.leases.lock();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for d in digests {
            *held.entry(d.clone()).or_default() += 1;
            keys.push(d);
        }
    }

    /// Notes that this operation created `c` (so a rollback may delete it).
    pub fn created(&self, c: Created) {
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(c);
    }

    /// Deletes what this lease created, unless an image record or another
    /// lease uses it. The lease table stays locked throughout so no other
    /// operation can start relying on an item between check and delete.
    pub fn roll_back(
        &self,
        content: &ContentStore,
        snapshots: &Snapshots,
        images: &ImageStore,
    ) -> Result<PruneReport, Error> {
        let held = self.leases.lock();
        let (blobs, snaps) = referenced(&images.list()?);
        let mine = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let others = |d: &Digest| {
            held.get(d).copied().unwrap_or(0) > mine.iter().filter(|k| *k == d).count()
        };
        let mut report = PruneReport::default();
        for c in self
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            match c {
                Created::Blob(d) if !blobs.contains(&d) && !others(&d) => {
                    content.remove(&d)?;
                    report.blobs.push(d);
                }
                Created::Snapshot(c) if !snaps.contains(&c) && !others(&c) => {
                    snapshots.remove(&c)?;
                    report.snapshots.push(c);
                }
                _ => {}
            }
        }
        Ok(report)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut held = self.leases.lock();
        for k in self
            .keys
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            if let Some(n) = held.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&k);
                }
            }
        }
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
/// (a just-removed image) used. Callers hold the service's exclusive lock,
/// so no lease can be live.
pub fn collect(
    content: &ContentStore,
    snapshots: &Snapshots,
    images: &ImageStore,
    only: Option<&Image>,
) -> Result<PruneReport, Error> {
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

    #[test]
    fn rollback_spares_what_others_hold_or_images_reference() {
        let dir = tempfile::tempdir().unwrap();
        let content = ContentStore::open(dir.path()).unwrap();
        let snapshots = Snapshots::open(dir.path()).unwrap();
        let images = ImageStore::open(dir.path()).unwrap();
        let mine = content.write_all(None, b"mine").unwrap();
        let shared = content.write_all(None, b"shared").unwrap();
        let leases = Leases::default();
        let other = leases.lease();
        other.hold([shared.clone()]);
        let lease = leases.lease();
        lease.hold([mine.clone(), shared.clone()]);
        lease.created(Created::Blob(mine.clone()));
        lease.created(Created::Blob(shared.clone()));
        let report = lease.roll_back(&content, &snapshots, &images).unwrap();
        assert_eq!(report.blobs, vec![mine.clone()]);
        assert!(!content.contains(&mine) && content.contains(&shared));
        drop(lease);
        drop(other);
        assert!(leases.lock().is_empty(), "drop releases every hold");
    }
}
