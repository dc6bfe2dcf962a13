//! etcd v3 backend: [`Store`] over a real etcd cluster, for HA control planes.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/storage/etcd3/store.go` (the
//! apiserver's etcd store) and, for the connection settings, k3s's
//! `--datastore-endpoint` handling.
//!
//! Keys are written verbatim and revisions are etcd's own, so `etcdctl get
//! --prefix /registry/` shows what the API serves and a `resourceVersion`
//! is an etcd revision. Every conditional write is one etcd transaction:
//! compare (create or mod revision), then write, else read the key back so
//! a failed write can say *why* without a second round trip racing other
//! writers.

mod lease;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};

use self::lease::{LeaseCache, Plan};
use crate::{
    check_value_size, prefix_end, Error, KeyValue, ListOptions, ListResponse, Result, Revision,
    Store, WatchStream,
};

/// How long start-up waits for the cluster to answer before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one request, so a wedged connection surfaces as an error
/// instead of a hung API request. Generous: a loaded etcd doing fsyncs on a
/// shared disk can take seconds for a write.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings keep idle watch streams honest: a member that vanished
/// without closing the TCP connection is noticed within interval + timeout.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd's gRPC error messages (`rpctypes.ErrGRPCCompacted`,
/// `ErrGRPCFutureRev`); stable across etcd 3.x.
const MSG_COMPACTED: &str = "required revision has been compacted";
const MSG_FUTURE_REVISION: &str = "required revision is a future revision";
const MSG_LEASE_NOT_FOUND: &str = "requested lease not found";

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

/// Largest gRPC response the client accepts.
pub(crate) const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// A [`Store`] backed by an etcd v3 cluster. Cheap to share: the client
/// multiplexes every request over one HTTP/2 connection per member.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    /// The endpoints, joined, for error messages.
    endpoints: Arc<str>,
    /// The newest revision this store compacted to; the fallback answer to
    /// "how far back does history go" when etcd cannot be asked.
    compacted: Arc<AtomicI64>,
    leases: Arc<LeaseCache>,
}

impl EtcdStore {
    /// A KV client that takes responses of any size etcd sends: a list of
    /// many large objects exceeds gRPC's 4 MiB default (etcd's Go client,
    /// which kube-apiserver uses, allows 2 GiB).
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
    }

    /// Connect to the cluster and check that it answers, so a wrong endpoint
    /// fails start-up with a message naming it instead of failing later.
    pub async fn connect(config: &EtcdConfig) -> Result<EtcdStore> {
        if config.endpoints.is_empty() {
            return Err(Error::Unavailable("no etcd endpoints configured".into()));
        }
        let endpoints: Arc<str> = config.endpoints.join(", ").into();
        let unreachable = |reason: String| {
            Error::Unavailable(format!("cannot reach etcd at {endpoints}: {reason}"))
        };

        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
            .with_keep_alive_while_idle(true)
            // A member cut off from its leader refuses requests and cancels
            // watches instead of serving stale reads or stalling (the
            // apiserver asks the same of etcd).
            .with_require_leader(true);
        if let Some(tls) = tls_options(config)? {
            options = options.with_tls(tls);
        }
        let client = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            // The channel connects lazily: errors here are about the
            // configuration, not the network.
            Ok(Err(e)) => {
                return Err(Error::Unavailable(format!(
                    "cannot use etcd endpoints {endpoints}: {}",
                    reason(&e)
                )))
            }
            Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        let store = EtcdStore {
            client,
            endpoints: endpoints.clone(),
            compacted: Arc::new(AtomicI64::new(0)),
            leases: Arc::new(LeaseCache::default()),
        };
        // The client connects lazily; one read proves the cluster is there
        // and has a leader.
        let mut kv = store.kv();
        let probe = kv.get(b"\0".to_vec(), Some(GetOptions::new().with_count_only()));
        match tokio::time::timeout(CONNECT_TIMEOUT, probe).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(unreachable(reason(&e))),
            Err(_) => Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// Run one request with [`REQUEST_TIMEOUT`], naming `op` in errors.
    async fn call<T>(
        &self,
        op: &'static str,
        request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
            Ok(result) => result.map_err(Error::etcd(op)),
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {}: {op} got no answer within {REQUEST_TIMEOUT:?} (a write may or may not have happened)",
                self.endpoints
            ))),
        }
    }

    async fn txn(&self, op: &'static str, txn: Txn) -> Result<TxnResponse> {
        let mut kv = self.kv();
        self.call(op, kv.txn(txn)).await
    }

    /// A lease that expires no earlier than `ttl` from now (whole seconds,
    /// rounded up: etcd's granularity), shared with recent writes where
    /// possible; 0 (no lease) without a TTL.
    async fn lease(&self, ttl: Option<Duration>) -> Result<i64> {
        let Some(ttl) = ttl else { return Ok(0) };
        let asked_at = Instant::now();
        match self.leases.plan(lease::ttl_seconds(ttl), asked_at) {
            Plan::Reuse(id) => Ok(id),
            Plan::Grant { ttl, grant } => {
                let mut client = self.client.lease_client();
                let seconds = i64::try_from(grant).unwrap_or(i64::MAX);
                let granted = self
                    .call("grant lease", client.grant(seconds, None))
                    .await?;
                self.leases.granted(granted.id(), ttl, grant, asked_at);
                Ok(granted.id())
            }
        }
    }

    /// Run the write `build` makes for a lease for `ttl` (0 without one).
    /// A shared lease etcd no longer knows (revoked behind our back) is
    /// dropped and the write tried once more with a fresh one.
    async fn write_with_ttl(
        &self,
        op: &'static str,
        ttl: Option<Duration>,
        build: impl Fn(i64) -> Txn,
    ) -> Result<TxnResponse> {
        let lease = self.lease(ttl).await?;
        match self.txn(op, build(lease)).await {
            Err(Error::Etcd { source, .. })
                if lease != 0 && has_message(&source, MSG_LEASE_NOT_FOUND) =>
            {
                self.leases.forget(lease);
                let lease = self.lease(ttl).await?;
                self.txn(op, build(lease)).await
            }
            other => other,
        }
    }

    /// Turn etcd's revision errors into the store's; `requested` is the
    /// revision the caller asked for.
    async fn revision_error(&self, op: &'static str, requested: Revision, err: Error) -> Error {
        match &err {
            Error::Etcd { source, .. } if has_message(source, MSG_COMPACTED) => Error::Compacted {
                requested,
                compacted: self.compacted_revision(requested).await,
            },
            Error::Etcd { source, .. } if has_message(source, MSG_FUTURE_REVISION) => {
                match self.current_revision().await {
                    Ok(current) => Error::FutureRevision { requested, current },
                    Err(_) => err,
                }
            }
            _ => {
                tracing::debug!(op, %err, "etcd request failed");
                err
            }
        }
    }

    /// The revision etcd has compacted to. A range error does not carry it,
    /// but a watch from revision 1 is cancelled with it at once.
    async fn compacted_revision(&self, requested: Revision) -> Revision {
        let known = self.compacted.load(Ordering::Relaxed).max(requested + 1);
        match watch::probe_compacted(&self.client).await {
            Some(revision) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                revision
            }
            None => known,
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn current_revision(&self) -> Result<Revision> {
        let mut kv = self.kv();
        let options = GetOptions::new().with_count_only();
        let response = self
            .call("current revision", kv.get(b"\0".to_vec(), Some(options)))
            .await?;
        Ok(header_revision(response.header()))
    }

    async fn get(
        &self,
        key: &str,
        revision: Option<Revision>,
    ) -> Result<(Option<KeyValue>, Revision)> {
        // etcd reads revision 0 (and below) as "latest"; so does the store.
        let revision = revision.filter(|r| *r > 0);
        let mut kv = self.kv();
        let mut options = GetOptions::new();
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = match self.call("get", kv.get(key, Some(options))).await {
            Ok(response) => response,
            Err(err) => return Err(self.revision_error("get", revision.unwrap_or(0), err).await),
        };
        // The header carries the newest revision; a read at an older one
        // was served at that one.
        let served_at = revision.unwrap_or_else(|| header_revision(response.header()));
        Ok((response.kvs().first().map(key_value), served_at))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResponse> {
        let revision = opts.revision.filter(|r| *r > 0);
        let (mut start, end) = key_range(prefix);
        if let Some(after) = &opts.start_after {
            let mut next = after.as_bytes().to_vec();
            next.push(0);
            start = start.max(next);
        }
        let mut options = GetOptions::new().with_range(end);
        if opts.limit > 0 {
            options = options.with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        }
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let mut kv = self.kv();
        let response = match self.call("list", kv.get(start, Some(options))).await {
            Ok(response) => response,
            Err(err) => {
                return Err(self
                    .revision_error("list", revision.unwrap_or(0), err)
                    .await)
            }
        };
        let items: Vec<KeyValue> = response.kvs().iter().map(key_value).collect();
        // etcd counts the whole requested range, returned keys included.
        let remaining = (response.count() - items.len() as i64).max(0);
        Ok(ListResponse {
            revision: revision.unwrap_or_else(|| header_revision(response.header())),
            more: response.more(),
            remaining: if response.more() { remaining } else { 0 },
            items,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let (start, end) = key_range(prefix);
        let mut kv = self.kv();
        let options = GetOptions::new().with_range(end).with_count_only();
        let response = self.call("count", kv.get(start, Some(options))).await?;
        Ok(response.count())
    }

    async fn create(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        let response = self
            .write_with_ttl("create", ttl, |lease| {
                Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key,
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease)),
                    )])
            })
            .await?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = header_revision(response.header());
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        ttl: Option<Duration>,
    ) -> Result<KeyValue> {
        check_value_size(key, &value)?;
        // A missing key has mod revision 0, so the existence check keeps
        // `expected = 0` from turning an update into a create.
        let response = self
            .write_with_ttl("update", ttl, |lease| {
                Txn::new()
                    .when([
                        Compare::create_revision(key, CompareOp::Greater, 0),
                        Compare::mod_revision(key, CompareOp::Equal, expected),
                    ])
                    .and_then([TxnOp::put(
                        key,
                        value.clone(),
                        Some(PutOptions::new().with_lease(lease).with_prev_key()),
                    )])
                    .or_else([TxnOp::get(key, None)])
            })
            .await?;
        if !response.succeeded() {
            return Err(mismatch(key, expected, &response));
        }
        let revision = header_revision(response.header());
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|prev| prev.create_revision()),
                _ => None,
            })
            .unwrap_or(revision);
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let compares: Vec<Compare> = expected
            .map(|expected| Compare::mod_revision(key, CompareOp::Equal, expected))
            .into_iter()
            .collect();
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn("delete", txn).await?;
        if !response.succeeded() {
            return Err(mismatch(key, expected.unwrap_or(0), &response));
        }
        let deleted = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(key_value),
            _ => None,
        });
        match deleted {
            Some(kv) => Ok((kv, header_revision(response.header()))),
            None => Err(Error::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (start, end) = key_range(prefix);
        let open = watch::open(&self.client, start, end, after);
        match tokio::time::timeout(REQUEST_TIMEOUT, open).await {
            Ok(result) => result,
            Err(_) => Err(Error::Unavailable(format!(
                "etcd at {}: watch got no answer within {REQUEST_TIMEOUT:?}",
                self.endpoints
            ))),
        }
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut kv = self.kv();
        match self.call("compact", kv.compact(revision, None)).await {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            // Someone (us earlier, the apiserver of another member) already
            // compacted this far: the history is gone either way.
            Err(Error::Etcd { source, .. }) if has_message(&source, MSG_COMPACTED) => Ok(()),
            Err(err) => Err(self.revision_error("compact", revision, err).await),
        }
    }
}

/// The key range `[start, end)` holding every key that starts with `prefix`,
/// in etcd's encoding: an end of `"\0"` means "to the end of the key space".
fn key_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    let start = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    };
    (start, prefix_end(prefix).unwrap_or_else(|| vec![0]))
}

/// Why a conditional write's compare failed, from the `get` in its else
/// branch: the key is gone, or it moved on.
fn mismatch(key: &str, expected: Revision, response: &TxnResponse) -> Error {
    let current = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(key_value),
        _ => None,
    });
    match current {
        Some(current) => Error::Conflict {
            key: key.to_string(),
            expected,
            current: Box::new(current),
        },
        None => Error::NotFound {
            key: key.to_string(),
        },
    }
}

fn key_value(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        // Keys written through the store are UTF-8; one written by hand
        // with etcdctl may not be, and must not make a whole list fail.
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map(|h| h.revision()).unwrap_or(0)
}

/// A one-line cause for start-up errors: tonic's status prints its whole
/// source chain in debug form, while a user needs "connection refused".
fn reason(err: &etcd_client::Error) -> String {
    let etcd_client::Error::GRpcStatus(status) = err else {
        return err.to_string();
    };
    let mut root: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(status);
    while let Some(source) = next {
        root = Some(source);
        next = source.source();
    }
    match root {
        Some(root) if root.to_string() != status.message() => {
            format!("{}: {root}", status.message())
        }
        _ => status.message().to_string(),
    }
}

/// Whether `err` is the gRPC error etcd reports with `message`.
fn has_message(err: &etcd_client::Error, message: &str) -> bool {
    matches!(err, etcd_client::Error::GRpcStatus(status) if status.message().contains(message))
}

/// TLS settings from the configured files, or `None` without any. Files are
/// read here so a wrong path fails start-up with the path in the message.
fn tls_options(config: &EtcdConfig) -> Result<Option<TlsOptions>> {
    let wants_tls = config.endpoints.iter().any(|e| e.starts_with("https://"));
    if !wants_tls
        && config.ca_file.is_none()
        && config.cert_file.is_none()
        && config.key_file.is_none()
    {
        return Ok(None);
    }
    let mut tls = TlsOptions::new();
    if let Some(ca) = &config.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read_pem("CA", ca)?));
    }
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read_pem("certificate", cert)?,
                read_pem("key", key)?,
            ));
        }
        (None, None) => {}
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::Unavailable(
                "etcd client certificate and key must be given together".into(),
            ))
        }
    }
    Ok(Some(tls))
}

fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::Unavailable(format!(
            "cannot read etcd {what} file {}: {e}",
            path.display()
        ))
    })
}
