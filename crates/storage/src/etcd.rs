//! etcd v3 backend (placeholder; being written).
use std::path::PathBuf;

/// Where the etcd cluster is and how to authenticate to it
/// (`--datastore-endpoint`, `--datastore-cafile`, `--datastore-certfile`,
/// `--datastore-keyfile`).
#[derive(Clone, Debug, Default)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

pub struct EtcdStore;
