//! An in-memory copy of one resource's objects, kept current by a watch
//! on the store, for admission plugins that read other objects on every
//! write (PriorityClasses, LimitRanges, ResourceQuotas).
//!
//! Upstream counterpart: the shared informers' listers the admission
//! plugins read (`SetExternalKubeInformerFactory`). Like those, a copy may
//! lag the store by a moment; plugins that must not act on a stale view
//! read the store itself before deciding (a missing PriorityClass, the
//! compare-and-swap of a quota's usage).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use rkube_storage::{EventKind, ListOptions, Revision, Store};
use serde_json::Value;
use tokio::sync::OnceCell;

/// How long a broken watch waits before listing again.
const RELIST_DELAY: Duration = Duration::from_secs(1);

/// Errors of a lister.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing {prefix}: {source}")]
    List {
        prefix: String,
        #[source]
        source: rkube_storage::Error,
    },
}

pub struct Lister {
    store: Arc<dyn Store>,
    /// The resource's key prefix, `/registry/<resource>/`.
    prefix: String,
    objects: RwLock<BTreeMap<String, Arc<Value>>>,
    started: OnceCell<()>,
}

impl Lister {
    pub fn new(store: Arc<dyn Store>, prefix: String) -> Arc<Lister> {
        Arc::new(Lister {
            store,
            prefix,
            objects: RwLock::new(BTreeMap::new()),
            started: OnceCell::new(),
        })
    }

    /// The objects whose key continues the prefix with `sub` (`"<ns>/"`
    /// for a namespace, `""` for all), in key order.
    pub async fn under(self: &Arc<Self>, sub: &str) -> Result<Vec<Arc<Value>>, Error> {
        self.ensure().await?;
        let start = format!("{}{sub}", self.prefix);
        let objects = self.objects.read().unwrap_or_else(|p| p.into_inner());
        Ok(objects
            .range::<String, _>((Bound::Included(&start), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&start))
            .map(|(_, v)| v.clone())
            .collect())
    }

    /// Whether the copy holds no object at all: the check a plugin that
    /// is usually idle (admission webhooks) makes on every write.
    pub async fn is_empty(self: &Arc<Self>) -> Result<bool, Error> {
        self.ensure().await?;
        Ok(self
            .objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty())
    }

    /// Like [`Lister::under`], but when the copy has nothing there, asks
    /// the store itself: an object created a moment ago (a quota, then at
    /// once the creates it should limit) may not have reached the copy.
    /// Upstream's quota admission does the same live lookup when its
    /// lister comes back empty. The common case, nothing there at all,
    /// costs a count.
    pub async fn under_or_live(self: &Arc<Self>, sub: &str) -> Result<Vec<Arc<Value>>, Error> {
        let cached = self.under(sub).await?;
        if !cached.is_empty() {
            return Ok(cached);
        }
        let prefix = format!("{}{sub}", self.prefix);
        let error = |source| Error::List {
            prefix: prefix.clone(),
            source,
        };
        if self.store.count(&prefix).await.map_err(error)? == 0 {
            return Ok(cached);
        }
        let mut live = Vec::new();
        let mut opts = ListOptions::default();
        loop {
            let page = self
                .store
                .list(&prefix, opts.clone())
                .await
                .map_err(error)?;
            let last = page.items.last().map(|kv| kv.key.clone());
            live.extend(
                page.items
                    .iter()
                    .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                    .map(Arc::new),
            );
            if !page.more {
                return Ok(live);
            }
            opts.start_after = last;
            opts.revision = Some(page.revision);
        }
    }

    /// Load the objects the first time they are needed, then follow the
    /// store's changes in the background.
    async fn ensure(self: &Arc<Self>) -> Result<(), Error> {
        self.started
            .get_or_try_init(|| async {
                let revision = self.load().await?;
                tokio::spawn(follow(Arc::downgrade(self), revision));
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Replace the copy with the store's current objects.
    async fn load(&self) -> Result<Revision, Error> {
        let mut loaded = BTreeMap::new();
        let mut opts = ListOptions::default();
        let revision = loop {
            let page = self
                .store
                .list(&self.prefix, opts.clone())
                .await
                .map_err(|source| Error::List {
                    prefix: self.prefix.clone(),
                    source,
                })?;
            let last = page.items.last().map(|kv| kv.key.clone());
            for kv in page.items {
                if let Ok(v) = serde_json::from_slice::<Value>(&kv.value) {
                    loaded.insert(kv.key, Arc::new(v));
                }
            }
            if !page.more {
                break page.revision;
            }
            opts.start_after = last;
            opts.revision = Some(page.revision);
        };
        *self.objects.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(revision)
    }

    fn apply(&self, kind: EventKind, key: String, value: &[u8]) {
        let mut objects = self.objects.write().unwrap_or_else(|p| p.into_inner());
        match kind {
            EventKind::Delete => {
                objects.remove(&key);
            }
            EventKind::Create | EventKind::Update => {
                if let Ok(v) = serde_json::from_slice::<Value>(value) {
                    objects.insert(key, Arc::new(v));
                }
            }
        }
    }
}

/// Apply the store's changes to the lister while it is in use; relist
/// when the watch breaks.
async fn follow(lister: Weak<Lister>, mut revision: Revision) {
    loop {
        let Some(l) = lister.upgrade() else { return };
        let (store, prefix) = (l.store.clone(), l.prefix.clone());
        drop(l);
        if let Ok(mut events) = store.watch(&prefix, revision).await {
            while let Some(Ok(ev)) = events.next().await {
                let Some(l) = lister.upgrade() else { return };
                revision = ev.revision();
                l.apply(ev.kind, ev.kv.key.clone(), &ev.kv.value);
            }
        }
        tokio::time::sleep(RELIST_DELAY).await;
        let Some(l) = lister.upgrade() else { return };
        match l.load().await {
            Ok(rev) => revision = rev,
            Err(e) => tracing::warn!(error = %e, "admission lister cannot relist"),
        }
    }
}
