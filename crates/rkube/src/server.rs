//! `rkube server`: user intent from flags, then start-up in readiness order.
//!
//! Today the server brings up the datastore (embedded SQLite, or etcd with
//! `--datastore-endpoint`) with automatic compaction; the API server and
//! control plane are assembled here as they land.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rkube_storage::compactor::{self, CompactionPolicy};
use rkube_storage::etcd::{EtcdConfig, EtcdStore};
use rkube_storage::sqlite::SqliteStore;
use rkube_storage::Store;

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Directory holding all of this server's state.
    #[arg(long, default_value = "/var/lib/rkube")]
    pub data_dir: PathBuf,

    /// etcd endpoints (comma-separated URLs) to use instead of the embedded
    /// SQLite store, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379.
    #[arg(long, value_delimiter = ',')]
    pub datastore_endpoint: Vec<String>,

    /// CA certificate that signed the etcd servers' certificates.
    #[arg(long)]
    pub datastore_cafile: Option<PathBuf>,

    /// Client certificate presented to etcd.
    #[arg(long)]
    pub datastore_certfile: Option<PathBuf>,

    /// Key of the client certificate presented to etcd.
    #[arg(long)]
    pub datastore_keyfile: Option<PathBuf>,

    /// How often old revisions are compacted, in seconds (0 turns it off).
    #[arg(long, default_value_t = 300)]
    pub compaction_interval: u64,

    /// How many of the newest revisions compaction keeps.
    #[arg(long, default_value_t = 1000)]
    pub compaction_retention: i64,
}

impl ServerArgs {
    /// The embedded database file under the data dir.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("server/db/state.db")
    }
}

/// Open the datastore the flags select.
pub async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.datastore_endpoint.is_empty() {
        let path = args.sqlite_path();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path)).await??;
        tracing::info!(path = %store.path().display(), "datastore: embedded sqlite");
        return Ok(Arc::new(store));
    }
    let config = EtcdConfig {
        endpoints: args.datastore_endpoint.clone(),
        ca_file: args.datastore_cafile.clone(),
        cert_file: args.datastore_certfile.clone(),
        key_file: args.datastore_keyfile.clone(),
    };
    let store = EtcdStore::connect(&config).await?;
    tracing::info!(endpoints = ?config.endpoints, "datastore: etcd");
    Ok(Arc::new(store))
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let store = open_store(&args)
        .await
        .context("cannot open the datastore")?;
    let revision = store.current_revision().await?;
    tracing::info!(backend = store.backend(), revision, "datastore ready");
    let policy = CompactionPolicy {
        interval: Duration::from_secs(args.compaction_interval),
        retain: args.compaction_retention,
    };
    let _compactor = compactor::spawn(store.clone(), policy);
    tokio::signal::ctrl_c().await?;
    tracing::info!("shutting down");
    Ok(())
}
