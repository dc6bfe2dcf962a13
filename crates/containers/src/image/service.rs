//! `ImageService`: the façade the runtime, the kubelet and `rkube ctr
//! images` call — pull, import, export, list, remove, prune, and the
//! overlayfs lowerdirs and run config of an image.
//!
//! Upstream counterpart: containerd's image service (the CRI
//! `ImageService` plus `ctr images`). Pulls and imports hold the store
//! lock shared and remove/prune exclusive (an flock, so this also holds
//! between the agent and `rkube ctr`): garbage collection never deletes a
//! blob an in-flight pull has just decided it can reuse.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use super::archive;
use super::auth::DockerConfig;
use super::client::{self, ChunkReader, Client, Repository, Stats};
use super::content::{self, ContentStore};
use super::gc::{self, Created, LockGuard, Rollback, StoreLock};
use super::oci::{self, Descriptor, Digest, Document, ImageConfig, Manifest, RunConfig};
use super::reference::{self, Reference};
use super::registries::RegistriesConfig;
use super::store::{self, Image, ImageStore, Layer};
use super::unpack::{self, Snapshots};

/// Layers downloaded and unpacked at the same time during a pull.
const PARALLEL_LAYERS: usize = 4;

/// Errors from image operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pull {reference}: {source}")]
    Pull {
        reference: String,
        #[source]
        source: Box<Error>,
    },
    #[error("import {path}: {source}")]
    Import {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    #[error("no registry endpoint configured for {0}")]
    NoEndpoint(String),
    #[error("{what} has no linux/amd64 manifest")]
    NoPlatform { what: String },
    #[error("manifest {0} is an index nested in an index, which is not supported")]
    NestedIndex(Digest),
    #[error("image config lists {diff_ids} diff ids for {layers} layers")]
    LayerCount { diff_ids: usize, layers: usize },
    #[error("read directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Reference(#[from] reference::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Content(#[from] content::Error),
    #[error(transparent)]
    Unpack(#[from] unpack::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Oci(#[from] oci::Error),
    #[error(transparent)]
    Archive(#[from] archive::Error),
    #[error(transparent)]
    Gc(#[from] gc::Error),
}

pub use gc::PruneReport;

/// The node's images under one root directory (for the agent, e.g.
/// `<data-dir>/agent/images-store`; k3s' equivalent is containerd's root
/// under `<data-dir>/agent/containerd`): `content/`, `snapshots/`, `images/`.
pub struct ImageService {
    content: ContentStore,
    snapshots: Snapshots,
    images: ImageStore,
    client: Client,
    lock: StoreLock,
}

impl ImageService {
    /// Opens the stores under `root`, clearing leftovers of interrupted
    /// downloads and unpacks.
    pub fn open(root: &Path, registries: RegistriesConfig) -> Result<ImageService, Error> {
        let content = ContentStore::open(root)?;
        // Leftovers of interrupted downloads are not cleared here: another
        // process may be mid-pull in this store. Prune clears them.
        let snapshots = Snapshots::open(root)?;
        Ok(ImageService {
            content,
            snapshots,
            images: ImageStore::open(root)?,
            client: Client::new(registries),
            lock: StoreLock::open(root)?,
        })
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Transfer counters of this service's registry client.
    pub fn stats(&self) -> &Stats {
        self.client.stats()
    }

    /// Pulls an image for linux/amd64, reusing blobs and snapshots already
    /// present. Nothing is recorded unless every blob verified.
    pub async fn pull(&self, reference: &str, auth: Option<&DockerConfig>) -> Result<Image, Error> {
        let r: Reference = reference.parse()?;
        self.pull_ref(&r, auth).await.map_err(|e| Error::Pull {
            reference: r.to_string(),
            source: Box::new(e),
        })
    }

    async fn pull_ref(&self, r: &Reference, auth: Option<&DockerConfig>) -> Result<Image, Error> {
        let mut last = None;
        // Mirrors are tried in order for resolving the name; the endpoint
        // that resolves it serves the blobs too.
        for repo in self.client.repositories(r, auth, false)? {
            match repo.manifest(&r.object()).await {
                Ok(top) => return self.pull_from(r, &repo, top).await,
                Err(e) => {
                    tracing::debug!(endpoint = %repo.endpoint().base_url(), error = %e, "resolve failed, trying next endpoint");
                    last = Some(e);
                }
            }
        }
        Err(last
            .map(Error::from)
            .unwrap_or_else(|| Error::NoEndpoint(r.to_string())))
    }

    /// Pulls from one endpoint; on failure, deletes whatever this pull
    /// created that nothing else uses, so no part of the image remains.
    async fn pull_from(
        &self,
        r: &Reference,
        repo: &Repository,
        top: client::Fetched,
    ) -> Result<Image, Error> {
        let rollback = Rollback::default();
        let shared = self.lock.shared().await?;
        let result = self.pull_tracked(r, repo, top, &rollback).await;
        drop(shared);
        if result.is_err() {
            // Exclusive: no other pull is in flight to rely on what we made.
            let exclusive = self.lock.exclusive().await?;
            match rollback.roll_back(&exclusive, &self.content, &self.snapshots, &self.images) {
                Ok(report) => tracing::debug!(?report, "rolled back failed pull"),
                Err(e) => tracing::warn!(error = %e, "rolling back a failed pull"),
            }
        }
        result
    }

    async fn pull_tracked(
        &self,
        r: &Reference,
        repo: &Repository,
        top: client::Fetched,
        rollback: &Rollback,
    ) -> Result<Image, Error> {
        let fetched = match oci::parse_document(top.media_type.as_deref(), &top.bytes)? {
            Document::Manifest(_) => top.clone(),
            Document::Index(index) => {
                let desc = oci::select_platform(&index).ok_or_else(|| Error::NoPlatform {
                    what: r.to_string(),
                })?;
                repo.manifest(desc.digest.as_str()).await?
            }
        };
        let manifest = match oci::parse_document(fetched.media_type.as_deref(), &fetched.bytes)? {
            Document::Manifest(m) => m,
            Document::Index(_) => return Err(Error::NestedIndex(fetched.digest)),
        };
        check_media_types(&manifest)?;
        if !self.content.contains(&manifest.config.digest) {
            repo.fetch_blob(&manifest.config, &self.content).await?;
            rollback.created(Created::Blob(manifest.config.digest.clone()));
        }
        let layers = self.prepare_layers(&manifest, Some(repo), rollback).await?;
        // Documents go in last: their presence means the image is complete.
        for doc in [&fetched, &top] {
            if !self.content.contains(&doc.digest) {
                self.content.write_all(Some(&doc.digest), &doc.bytes)?;
                rollback.created(Created::Blob(doc.digest.clone()));
            }
        }
        let image = self.record(
            r.to_string(),
            top.digest,
            fetched.digest,
            fetched.bytes.len() as u64,
            &manifest,
            layers,
        );
        self.images.put(&image)?;
        Ok(image)
    }

    /// Makes sure each layer's blob and snapshot exist, downloading (when
    /// a repository is given) and unpacking several layers at once.
    async fn prepare_layers(
        &self,
        manifest: &Manifest,
        repo: Option<&Repository>,
        rollback: &Rollback,
    ) -> Result<Vec<Layer>, Error> {
        let config: ImageConfig =
            oci::parse("image config", &self.content.read(&manifest.config.digest)?)?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::LayerCount {
                diff_ids: diff_ids.len(),
                layers: manifest.layers.len(),
            });
        }
        let chain = oci::chain_ids(diff_ids);
        let work = manifest.layers.iter().zip(diff_ids).zip(&chain).map(
            |((desc, diff_id), chain_id)| async move {
                self.prepare_layer(desc, diff_id, chain_id, repo, rollback)
                    .await?;
                Ok::<_, Error>(Layer {
                    digest: desc.digest.clone(),
                    media_type: desc.media_type.clone(),
                    size: desc.size,
                    diff_id: diff_id.clone(),
                    chain_id: chain_id.clone(),
                })
            },
        );
        // Every layer runs to completion even when one fails, so nothing is
        // still being written when the caller rolls back.
        let results: Vec<Result<Layer, Error>> = futures::stream::iter(work)
            .buffered(PARALLEL_LAYERS)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn prepare_layer(
        &self,
        desc: &Descriptor,
        diff_id: &Digest,
        chain_id: &Digest,
        repo: Option<&Repository>,
        rollback: &Rollback,
    ) -> Result<(), Error> {
        let have_blob = self.content.contains(&desc.digest);
        let have_snapshot = self.snapshots.contains(chain_id);
        let (snapshots, chain, diff) = (self.snapshots.clone(), chain_id.clone(), diff_id.clone());
        match (have_blob, have_snapshot, repo) {
            (true, true, _) => {}
            (false, _, None) => return Err(content::Error::NotFound(desc.digest.clone()).into()),
            (true, false, _) => {
                let blob = self.content.open_blob(&desc.digest)?;
                tokio::task::spawn_blocking(move || snapshots.create(&chain, &diff, blob))
                    .await??;
                rollback.created(Created::Snapshot(chain_id.clone()));
            }
            (false, true, Some(repo)) => {
                repo.fetch_blob(desc, &self.content).await?;
                rollback.created(Created::Blob(desc.digest.clone()));
            }
            (false, false, Some(repo)) => {
                // Unpack while downloading: the unpacker reads the chunks the
                // blob writer tees off, so disk, network and CPU overlap.
                let (tx, rx) = std::sync::mpsc::sync_channel(64);
                let reader = ChunkReader::new(rx);
                let unpack =
                    tokio::task::spawn_blocking(move || snapshots.create(&chain, &diff, reader));
                let fetched = repo.fetch_blob_tee(desc, &self.content, Some(tx)).await;
                let unpacked = unpack.await?;
                if fetched.is_ok() {
                    rollback.created(Created::Blob(desc.digest.clone()));
                }
                if unpacked.is_ok() {
                    rollback.created(Created::Snapshot(chain_id.clone()));
                }
                // The download's error (e.g. a digest mismatch) explains an
                // unpack failure better than the truncated tar it caused.
                fetched?;
                unpacked?;
            }
        }
        Ok(())
    }

    fn record(
        &self,
        name: String,
        digest: Digest,
        manifest_digest: Digest,
        manifest_size: u64,
        m: &Manifest,
        layers: Vec<Layer>,
    ) -> Image {
        let size = manifest_size + m.config.size + layers.iter().map(|l| l.size).sum::<u64>();
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Image {
            name,
            digest,
            manifest_digest,
            config_digest: m.config.digest.clone(),
            layers,
            size,
            created,
        }
    }

    /// Imports every image of an OCI-layout or `docker save` archive
    /// (optionally gzipped), unpacking its layers.
    pub async fn import(&self, path: &Path) -> Result<Vec<Image>, Error> {
        let _shared = self.lock.shared().await?;
        self.import_inner(path).await.map_err(|e| Error::Import {
            path: path.into(),
            source: Box::new(e),
        })
    }

    async fn import_inner(&self, path: &Path) -> Result<Vec<Image>, Error> {
        let (p, content) = (path.to_path_buf(), self.content.clone());
        let found = tokio::task::spawn_blocking(move || archive::import(&p, &content)).await??;
        let mut out = Vec::new();
        for item in found {
            let bytes = self.content.read(&item.manifest)?;
            let manifest: Manifest = oci::parse("image manifest", &bytes)?;
            check_media_types(&manifest)?;
            // Imports keep what they unpacked even on failure: the blobs
            // came from the archive and a retry reuses them.
            let layers = self
                .prepare_layers(&manifest, None, &Rollback::default())
                .await?;
            let name = item
                .name
                .parse::<Reference>()
                .map_or(item.name.clone(), |r| r.to_string());
            let image = self.record(
                name,
                item.digest,
                item.manifest,
                bytes.len() as u64,
                &manifest,
                layers,
            );
            self.images.put(&image)?;
            out.push(image);
        }
        Ok(out)
    }

    /// Imports every `*.tar` / `*.tar.gz` in `dir` (air-gapped start-up:
    /// `<data-dir>/agent/images`). One bad archive does not stop the rest.
    pub async fn import_dir(
        &self,
        dir: &Path,
    ) -> Result<Vec<(PathBuf, Result<Vec<Image>, Error>)>, Error> {
        let read_dir = |source| Error::ReadDir {
            path: dir.into(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_dir)? {
            let path = entry.map_err(read_dir)?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_file()
                && (name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz"))
            {
                files.push(path);
            }
        }
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let result = self.import(&f).await;
            if let Err(e) = &result {
                tracing::warn!(error = %e, "image archive import failed");
            }
            out.push((f, result));
        }
        Ok(out)
    }

    /// Writes an image to an OCI image-layout tar.
    pub async fn export(&self, reference: &str, path: &Path) -> Result<(), Error> {
        let _shared = self.lock.shared().await?;
        let image = self.get(reference)?;
        let (p, content) = (path.to_path_buf(), self.content.clone());
        tokio::task::spawn_blocking(move || archive::export(&[image], &content, &p)).await??;
        Ok(())
    }

    /// Looks an image up by reference (normalised) or by digest.
    pub fn get(&self, reference: &str) -> Result<Image, Error> {
        if let Ok(d) = reference.parse::<Digest>() {
            let found = self
                .images
                .list()?
                .into_iter()
                .find(|i| i.digest == d || i.manifest_digest == d || i.config_digest == d);
            return found.ok_or_else(|| store::Error::NotFound(reference.to_string()).into());
        }
        Ok(self
            .images
            .get(&reference.parse::<Reference>()?.to_string())?)
    }

    pub fn list(&self) -> Result<Vec<Image>, Error> {
        Ok(self.images.list()?)
    }

    /// Removes an image's record and the blobs and snapshots no other
    /// image uses.
    pub async fn remove(&self, reference: &str) -> Result<PruneReport, Error> {
        let exclusive = self.lock.exclusive().await?;
        let image = self.get(reference)?;
        self.images.remove(&image.name)?;
        self.collect(&exclusive, Some(&image))
    }

    /// Removes every blob and snapshot no image references.
    pub async fn prune(&self) -> Result<PruneReport, Error> {
        let exclusive = self.lock.exclusive().await?;
        self.collect(&exclusive, None)
    }

    fn collect(&self, exclusive: &LockGuard, only: Option<&Image>) -> Result<PruneReport, Error> {
        Ok(gc::collect(
            exclusive,
            &self.content,
            &self.snapshots,
            &self.images,
            only,
        )?)
    }

    /// Overlayfs lowerdirs for an image, top layer first (the order
    /// `lowerdir=` wants).
    pub fn rootfs_layers(&self, image: &Image) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .rev()
            .map(|l| self.snapshots.path(&l.chain_id))
            .collect()
    }

    /// The image's run configuration (Entrypoint, Cmd, Env, WorkingDir,
    /// User, ExposedPorts, ...).
    pub fn config(&self, image: &Image) -> Result<RunConfig, Error> {
        let config: ImageConfig =
            oci::parse("image config", &self.content.read(&image.config_digest)?)?;
        Ok(config.config)
    }
}

/// Refuses, before any download, images whose config or layers rkube
/// cannot use.
fn check_media_types(m: &Manifest) -> Result<(), Error> {
    if !client::supported_config(&m.config.media_type) {
        let e = client::Error::UnsupportedMediaType {
            what: format!("config {}", m.config.digest),
            media_type: m.config.media_type.clone(),
        };
        return Err(e.into());
    }
    for l in &m.layers {
        if !client::supported_layer(&l.media_type) {
            let e = client::Error::UnsupportedMediaType {
                what: format!("layer {}", l.digest),
                media_type: l.media_type.clone(),
            };
            return Err(e.into());
        }
    }
    Ok(())
}
