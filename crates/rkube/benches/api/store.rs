//! The baselines: the same operations straight against the embedded
//! SQLite store, in this process, with no HTTP, TLS, JSON handling,
//! admission or watch cache in the way.
//!
//! Upstream counterpart: none as such; it plays the part of etcd's own
//! benchmark numbers next to kube-apiserver's in Kubernetes' scalability
//! reports. Keys follow the apiserver's `/registry/<resource>/<ns>/<name>`
//! layout and values are the objects the API server stored, so both sides
//! move the same bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rkube_storage::sqlite::SqliteStore;
use rkube_storage::{ListOptions, Store};

use crate::fanout::{self, Fanout, FanoutResult};

pub struct StoreBaseline {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl StoreBaseline {
    pub fn open() -> anyhow::Result<StoreBaseline> {
        let dir = tempfile::Builder::new()
            .prefix("rkube-bench-store-")
            .tempdir()?;
        let store = SqliteStore::open(&dir.path().join("state.db")).context("open sqlite")?;
        Ok(StoreBaseline {
            store: Arc::new(store),
            _dir: dir,
        })
    }

    /// `n` creates of `<prefix><index>` by `clients` concurrent tasks;
    /// creates per second.
    pub async fn creates(
        &self,
        prefix: &str,
        n: usize,
        clients: usize,
        value: &[u8],
    ) -> anyhow::Result<f64> {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (store, next) = (self.store.clone(), next.clone());
                let (prefix, value) = (prefix.to_string(), value.to_vec());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return anyhow::Ok(());
                        }
                        store
                            .create(&format!("{prefix}{i:05}"), value.clone(), None)
                            .await?;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(n as f64 / started.elapsed().as_secs_f64())
    }

    /// Creates by `clients` concurrent tasks for `duration`; creates per
    /// second.
    pub async fn creates_for(
        &self,
        prefix: &str,
        duration: Duration,
        clients: usize,
        value: &[u8],
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let store = self.store.clone();
                let (prefix, value) = (prefix.to_string(), value.to_vec());
                tokio::spawn(async move {
                    let mut done = 0usize;
                    while started.elapsed() < duration {
                        let key = format!("{prefix}{client}-{done}");
                        store.create(&key, value.clone(), None).await?;
                        done += 1;
                    }
                    anyhow::Ok(done)
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        Ok(total as f64 / started.elapsed().as_secs_f64())
    }

    /// `n` sequential gets of `key`, each timed.
    pub async fn gets(&self, key: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            let (kv, _) = self.store.get(key, None).await?;
            times.push(started.elapsed());
            kv.with_context(|| format!("baseline key {key} is missing"))?;
        }
        Ok(times)
    }

    /// One whole list of `prefix` (pages of `limit`, 0 = one page, each
    /// page at the first page's revision); the time and the key count.
    pub async fn list(&self, prefix: &str, limit: usize) -> anyhow::Result<(Duration, usize)> {
        let started = Instant::now();
        let mut opts = ListOptions {
            limit,
            ..Default::default()
        };
        let mut count = 0;
        loop {
            let page = self.store.list(prefix, opts.clone()).await?;
            count += page.items.len();
            if !page.more {
                break;
            }
            opts.start_after = page.items.last().map(|kv| kv.key.clone());
            opts.revision = Some(page.revision);
        }
        Ok((started.elapsed(), count))
    }

    /// `watchers` store watches on `prefix`, then `writes` creates of
    /// `<prefix>w-<index>`.
    pub async fn fanout(
        &self,
        prefix: &str,
        watchers: usize,
        writes: usize,
        value: &[u8],
    ) -> anyhow::Result<FanoutResult> {
        let store = self.store.clone();
        let after = store.current_revision().await?;
        let mut tasks = Vec::new();
        let spawned = &mut tasks;
        let watch_store = store.clone();
        let start = move |fan: Arc<Fanout>| {
            let (tasks, store) = (spawned, watch_store);
            async move {
                for _ in 0..watchers {
                    let mut events = store.watch(prefix, after).await?;
                    let fan = fan.clone();
                    let marker = format!("{prefix}w-").into_bytes();
                    tasks.push(tokio::spawn(async move {
                        while let Some(Ok(event)) = events.next().await {
                            if let Some(i) = fanout::index_after(event.kv.key.as_bytes(), &marker) {
                                fan.seen(i);
                            }
                        }
                    }));
                }
                anyhow::Ok(())
            }
        };
        let write = |i: usize| {
            let store = store.clone();
            let value = value.to_vec();
            async move {
                store
                    .create(&format!("{prefix}w-{i:05}"), value, None)
                    .await?;
                anyhow::Ok(())
            }
        };
        let result = fanout::run(watchers, writes, start, write).await;
        for task in tasks {
            task.abort();
        }
        result
    }
}
