//! A watch kept as a small table: of each object only the part the
//! scheduler reads, by namespace and name.
//!
//! Upstream counterpart: the listers of client-go's shared informers that
//! the scheduler's plugins read (namespaces for InterPodAffinity's
//! namespaceSelector, Services for the default spreading,
//! PodDisruptionBudgets for preemption), and the informer event handlers
//! that tell the scheduling queue something changed
//! (`pkg/scheduler/eventhandlers.go`). Keeping a view instead of the object
//! keeps the scheduler's memory at a few strings per object; comparing views
//! lets a change the scheduler cannot see (a status heartbeat, a new
//! annotation) pass without waking any pod.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};

type Names<V> = HashMap<String, V>;

/// Views by namespace, then by name; cluster-scoped objects sit under the
/// namespace "". Clones share the table.
pub struct Table<V>(Arc<RwLock<HashMap<String, Names<V>>>>);

impl<V> Clone for Table<V> {
    fn clone(&self) -> Self {
        Table(self.0.clone())
    }
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table(Arc::default())
    }
}

impl<V> Table<V> {
    /// Whether both handles share one table.
    pub fn same(&self, other: &Table<V>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// `f` of the view of `ns`/`name`, if there is one.
    pub fn with<T>(&self, ns: &str, name: &str, f: impl FnOnce(Option<&V>) -> T) -> T {
        let map = self.0.read().expect("watched table lock");
        f(map.get(ns).and_then(|m| m.get(name)))
    }

    /// `f` of every view in `ns`.
    pub fn with_namespace<T>(
        &self,
        ns: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = &V>) -> T,
    ) -> T {
        let map = self.0.read().expect("watched table lock");
        f(&mut map.get(ns).into_iter().flat_map(|m| m.values()))
    }

    /// `f` of every view.
    pub fn with_all<T>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &V>) -> T) -> T {
        let map = self.0.read().expect("watched table lock");
        f(&mut map.values().flat_map(|m| m.values()))
    }

    /// Keep only the listed (namespace, name) keys; whether any went.
    pub fn retain(&self, keys: &HashSet<(String, String)>) -> bool {
        let mut map = self.0.write().expect("watched table lock");
        let mut removed = false;
        for (ns, m) in map.iter_mut() {
            let before = m.len();
            m.retain(|name, _| keys.contains(&(ns.clone(), name.clone())));
            removed |= m.len() != before;
        }
        map.retain(|_, m| !m.is_empty());
        removed
    }
}

impl<V: PartialEq> Table<V> {
    /// Store `view` for `ns`/`name` (None removes it); whether the table
    /// changed.
    pub fn set(&self, ns: &str, name: &str, view: Option<V>) -> bool {
        let mut map = self.0.write().expect("watched table lock");
        match view {
            Some(v) => {
                let names = map.entry(ns.to_string()).or_default();
                if names.get(name) == Some(&v) {
                    return false;
                }
                names.insert(name.to_string(), v);
                true
            }
            None => {
                let Some(names) = map.get_mut(ns) else {
                    return false;
                };
                let gone = names.remove(name).is_some();
                if names.is_empty() {
                    map.remove(ns);
                }
                gone
            }
        }
    }
}

/// Where an object goes in a [`Table`].
fn key<K: Resource>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Keep `table` equal to the views (`view`; None leaves an object out) of
/// every `K`. `listed` fires once the first list is in; after that,
/// `changed` runs whenever the table changes — once per relist at most.
/// Never returns.
pub async fn keep<K, V>(
    api: Api<K>,
    table: Table<V>,
    view: fn(&K) -> Option<V>,
    listed: tokio::sync::oneshot::Sender<()>,
    mut changed: impl FnMut() + Send,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    V: PartialEq,
{
    let mut listed = Some(listed);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing = HashSet::new();
    // Whether the relist under way changed anything.
    let mut relist_changed = false;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => {
                listing.clear();
                relist_changed = false;
            }
            Ok(Event::InitApply(obj)) => {
                let (ns, name) = key(&obj);
                relist_changed |= table.set(&ns, &name, view(&obj));
                listing.insert((ns, name));
            }
            Ok(Event::InitDone) => {
                relist_changed |= table.retain(&std::mem::take(&mut listing));
                match listed.take() {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None if relist_changed => changed(),
                    None => {}
                }
            }
            Ok(Event::Apply(obj)) => {
                let (ns, name) = key(&obj);
                if table.set(&ns, &name, view(&obj)) && listed.is_none() {
                    changed();
                }
            }
            Ok(Event::Delete(obj)) => {
                let (ns, name) = key(&obj);
                if table.set(&ns, &name, None) && listed.is_none() {
                    changed();
                }
            }
            Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_reports_only_real_changes() {
        let t: Table<u32> = Table::default();
        assert!(t.set("ns", "a", Some(1)));
        assert!(!t.set("ns", "a", Some(1)), "same view");
        assert!(t.set("ns", "a", Some(2)));
        assert!(t.set("ns", "b", Some(3)));
        assert_eq!(t.with("ns", "a", |v| v.copied()), Some(2));
        assert_eq!(t.with_namespace("ns", |it| it.copied().sum::<u32>()), 5);
        assert!(t.set("ns", "a", None));
        assert!(!t.set("ns", "a", None), "already gone");
        assert!(!t.set("other", "x", None));
        assert_eq!(t.with_all(|it| it.count()), 1);
    }

    #[test]
    fn retain_drops_what_a_relist_did_not_find() {
        let t: Table<u32> = Table::default();
        t.set("", "kept", Some(1));
        t.set("", "gone", Some(2));
        t.set("x", "gone", Some(3));
        let keys: HashSet<_> = [(String::new(), "kept".to_string())].into();
        assert!(t.retain(&keys));
        assert!(!t.retain(&keys), "nothing more to drop");
        assert_eq!(t.with_all(|it| it.copied().collect::<Vec<_>>()), vec![1]);
        assert!(t.same(&t.clone()));
        assert!(!t.same(&Table::default()));
    }
}
