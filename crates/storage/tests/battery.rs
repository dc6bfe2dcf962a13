//! The storage behaviour battery: one suite, every backend.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/storage/testing` (the store
//! tests every storage implementation runs) and kine's practice of running
//! them against each SQL driver. Each behaviour is written once as an
//! `async fn` over a [`Harness`]; the `battery!` macro turns it into one
//! `#[tokio::test]` per backend, `sqlite::<behaviour>` and
//! `etcd::<behaviour>`, so `cargo test --test battery sqlite::` runs one
//! backend alone.
//!
//! Every test gets a backend of its own — a fresh SQLite file in a temp dir
//! or a freshly started etcd process — because compaction is global to a
//! store, and because the checks compare the store's current revision with
//! their own last write's, which only holds without neighbours.

/// Asserts `result` failed with an error `pattern` matches, and returns
/// the error for closer checks. Defined before the modules so they see it.
macro_rules! assert_err {
    ($result:expr, $pattern:pat $(if $guard:expr)?) => {
        match $result {
            Err(err) if matches!(err, $pattern $(if $guard)?) => err,
            Err(other) => panic!("expected {}, got error: {other:?}", stringify!($pattern)),
            // The value is not printed: it may be megabytes.
            Ok(_) => panic!("expected {}, got success", stringify!($pattern)),
        }
    };
}

#[path = "battery/errors.rs"]
mod errors;
#[path = "battery/lifecycle.rs"]
mod lifecycle;
#[path = "battery/list.rs"]
mod list;
#[path = "battery/revisions.rs"]
mod revisions;
#[path = "support/mod.rs"]
mod support;
#[path = "battery/watch.rs"]
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rkube_storage::cache::CachedStore;
use rkube_storage::etcd::{EtcdConfig, EtcdStore};
use rkube_storage::sqlite::SqliteStore;
use rkube_storage::{KeyValue, Result, Store, WatchEvent, WatchStream};

use support::etcd::EtcdServer;

/// How long any single expected event or state may take to show up. Generous:
/// the machines running the suite are shared and slow.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A backend under test that can also be taken down and brought back.
#[async_trait]
pub trait Harness: Send {
    /// A handle on the store; clones share one connection.
    fn store(&self) -> Arc<dyn Store>;

    /// Stop the backend abruptly and start it again on the same data, as a
    /// crash and restart of the server would. The caller must have dropped
    /// every store handle and watch it held.
    async fn restart(&mut self);
}

/// A SQLite file in a temp dir of its own.
pub struct SqliteHarness {
    dir: tempfile::TempDir,
    store: Option<Arc<dyn Store>>,
}

impl SqliteHarness {
    fn new() -> SqliteHarness {
        let dir = tempfile::Builder::new()
            .prefix("rkube-battery-")
            .tempdir()
            .expect("create a temp dir");
        let mut harness = SqliteHarness { dir, store: None };
        harness.open();
        harness
    }

    fn open(&mut self) {
        let path = self.dir.path().join("state.db");
        let store =
            SqliteStore::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        self.store = Some(Arc::new(store));
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("store is open")
    }

    async fn restart(&mut self) {
        let store = self.store.take().expect("store is open");
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the test still holds a store handle"
        );
        // Dropping the last handle closes the database and releases its lock,
        // the in-process equivalent of the server exiting.
        drop(store);
        self.open();
    }
}

/// The watch cache in front of a SQLite file: the API server's read path.
pub struct CachedHarness {
    sqlite: SqliteHarness,
    store: Option<Arc<dyn Store>>,
}

impl CachedHarness {
    fn new() -> CachedHarness {
        let sqlite = SqliteHarness::new();
        let store = Some(Arc::new(CachedStore::new(sqlite.store())) as Arc<dyn Store>);
        CachedHarness { sqlite, store }
    }
}

#[async_trait]
impl Harness for CachedHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("store is open")
    }

    async fn restart(&mut self) {
        let store = self.store.take().expect("store is open");
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the test still holds a store handle"
        );
        drop(store);
        // The cache's feeder task lets go of the SQLite store once the
        // runtime has dropped it after the abort.
        let deadline = std::time::Instant::now() + DEADLINE;
        while self.sqlite.store.as_ref().map(Arc::strong_count) != Some(1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the watch cache still holds the store"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.sqlite.restart().await;
        self.store = Some(Arc::new(CachedStore::new(self.sqlite.store())));
    }
}

/// An etcd process of its own on loopback ports.
pub struct EtcdHarness {
    /// `None` only while a restart has moved it into a blocking task.
    server: Option<EtcdServer>,
    store: Option<Arc<dyn Store>>,
}

impl EtcdHarness {
    async fn new() -> EtcdHarness {
        // Starting waits for etcd to elect itself leader: keep that blocking
        // poll off the async workers.
        let server = tokio::task::spawn_blocking(EtcdServer::start)
            .await
            .expect("start etcd");
        let store = connect(&server.endpoint).await;
        EtcdHarness {
            server: Some(server),
            store: Some(store),
        }
    }
}

async fn connect(endpoint: &str) -> Arc<dyn Store> {
    let config = EtcdConfig {
        endpoints: vec![endpoint.to_string()],
        ..Default::default()
    };
    let store = EtcdStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect to etcd at {endpoint}: {e}"));
    Arc::new(store)
}

#[async_trait]
impl Harness for EtcdHarness {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("store is connected")
    }

    async fn restart(&mut self) {
        let store = self.store.take().expect("store is connected");
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the test still holds a store handle"
        );
        drop(store);
        let mut server = self.server.take().expect("etcd is running");
        let server = tokio::task::spawn_blocking(move || {
            // SIGKILL, no clean shutdown: acknowledged writes must survive it.
            server.kill();
            server.restart();
            server
        })
        .await
        .expect("restart etcd");
        // A fresh client, as a restarted apiserver would make; whether an old
        // client reconnects on its own is not what this battery checks.
        self.store = Some(connect(&server.endpoint).await);
        self.server = Some(server);
    }
}

/// Expands each behaviour into one test per backend.
macro_rules! battery {
    ($($module:ident :: $check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let mut harness = super::SqliteHarness::new();
                    super::$module::$check(&mut harness).await;
                }
            )*
        }
        mod cached {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let mut harness = super::CachedHarness::new();
                    super::$module::$check(&mut harness).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let mut harness = super::EtcdHarness::new().await;
                    super::$module::$check(&mut harness).await;
                }
            )*
        }
    };
}

battery! {
    revisions::write_revisions_strictly_increase,
    revisions::create_and_mod_revisions,
    revisions::get_latest_and_past,
    revisions::get_future_revision_fails,
    list::list_prefix_isolation_and_order,
    list::list_pages_with_limit_and_continue,
    list::list_pages_are_a_consistent_snapshot,
    list::count_follows_writes,
    errors::write_errors_are_distinct,
    errors::concurrent_cas_has_one_winner,
    errors::concurrent_counter_is_exact,
    errors::oversized_value_is_refused,
    watch::watch_live_events,
    watch::watch_replays_history_then_live,
    watch::watch_prefix_filtering,
    watch::watch_order_under_concurrent_writers,
    lifecycle::watch_resumes_after_restart,
    lifecycle::compaction,
    lifecycle::ttl_expiry,
}

/// `/registry/configmaps/test-<name>/`, the key prefix of one test.
pub fn prefix(name: &str) -> String {
    format!("/registry/configmaps/test-{name}/")
}

/// The next event of a watch, failing the test when none comes in time or
/// the stream ends or errs.
pub async fn next_event(watch: &mut WatchStream) -> WatchEvent {
    match next_item(watch).await {
        Some(Ok(event)) => event,
        Some(Err(err)) => panic!("watch failed: {err}"),
        None => panic!("watch ended"),
    }
}

/// The next item of a watch (`None`: the stream ended), failing the test
/// when none comes in time.
pub async fn next_item(watch: &mut WatchStream) -> Option<Result<WatchEvent>> {
    tokio::time::timeout(DEADLINE, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no watch event within {DEADLINE:?}"))
}

/// The current value of `key`, failing the test when it is absent.
pub async fn must_get(store: &dyn Store, key: &str) -> KeyValue {
    let (kv, _) = store
        .get(key, None)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    kv.unwrap_or_else(|| panic!("{key} is missing"))
}

/// Poll `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + deadline;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < until,
            "{what}: not true within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
