//! GET and LIST.
//!
//! A filtered, limited list reads store pages from one snapshot until it
//! has `limit` matching objects, as kube-apiserver does, so a page never
//! comes back short while more matches exist.

use rkube_machinery::StatusError;
use rkube_storage::Revision;
use serde_json::Value;

use crate::{storage_error, Filter, ResourceStore, Result};

/// What a LIST asks for.
#[derive(Clone, Default)]
pub struct ListOptions {
    /// Keep only objects this accepts.
    pub filter: Option<Filter>,
    /// At most this many objects; 0 for all.
    pub limit: usize,
    /// Continue after this key (relative to the list prefix), from a
    /// previous page's `continue_after`.
    pub start_after: Option<String>,
    /// Read the snapshot at this revision.
    pub revision: Option<Revision>,
    /// Byte strings every object the filter accepts contains in its
    /// stored JSON (see [`crate::selectable::needle`]): objects without
    /// them are skipped undecoded.
    pub needles: Vec<Vec<u8>>,
}

/// One page of a LIST, as JSON bytes.
#[derive(Debug)]
pub struct RawListPage {
    pub items: Vec<Vec<u8>>,
    pub revision: Revision,
    pub continue_after: Option<String>,
    pub remaining: Option<i64>,
}

/// One page of a LIST.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Value>,
    /// The revision of the snapshot (the list's resourceVersion).
    pub revision: Revision,
    /// Where the next page starts (relative key), when there is one.
    pub continue_after: Option<String>,
    /// Objects left after this page, when known without filtering.
    pub remaining: Option<i64>,
}

impl ResourceStore {
    /// One object, at the latest revision or at `revision`.
    pub async fn get(
        &self,
        namespace: Option<&str>,
        name: &str,
        revision: Option<Revision>,
    ) -> Result<Value> {
        let key = self.key(namespace, name);
        let (kv, _) = self
            .store
            .get(&key, revision)
            .await
            .map_err(|e| storage_error(self, name, e))?;
        match kv {
            Some(kv) => self.decode(&kv),
            None => Err(self.not_found(name)),
        }
    }

    /// A page of the objects of a namespace (or of all namespaces).
    pub async fn list(&self, namespace: Option<&str>, opts: &ListOptions) -> Result<ListPage> {
        let prefix = self.list_prefix(namespace);
        if let Some(after) = &opts.start_after {
            if after.contains("..") || after.starts_with('/') {
                return Err(StatusError::bad_request(format!(
                    "continue key is not valid: {after}"
                )));
            }
        }
        let mut start_after = opts.start_after.as_ref().map(|s| format!("{prefix}{s}"));
        let mut revision = opts.revision;
        let finders: Vec<memchr::memmem::Finder> = opts
            .needles
            .iter()
            .map(memchr::memmem::Finder::new)
            .collect();
        let mut items = Vec::new();
        loop {
            let want = if opts.limit == 0 {
                0
            } else {
                opts.limit - items.len()
            };
            // Filtering may drop objects: read a little more than asked.
            let page_size = if opts.filter.is_some() && want > 0 {
                want.max(64)
            } else {
                want
            };
            let page = self
                .store
                .list(
                    &prefix,
                    rkube_storage::ListOptions {
                        start_after: start_after.clone(),
                        limit: page_size,
                        revision,
                    },
                )
                .await
                .map_err(|e| storage_error(self, "", e))?;
            revision = Some(page.revision);
            let fetched = page.items.len();
            for (i, kv) in page.items.iter().enumerate() {
                let candidate = finders.iter().all(|f| f.find(&kv.value).is_some());
                if candidate {
                    let obj = self.decode(kv)?;
                    if opts.filter.as_ref().is_none_or(|f| f(&obj)) {
                        items.push(obj);
                    }
                }
                if opts.limit != 0 && items.len() == opts.limit {
                    let more = page.more || i + 1 < fetched;
                    let next = more.then(|| kv.key[prefix.len()..].to_string());
                    let remaining = (opts.filter.is_none() && more).then_some(page.remaining);
                    return Ok(ListPage {
                        items,
                        revision: page.revision,
                        continue_after: next,
                        remaining,
                    });
                }
            }
            if !page.more {
                return Ok(ListPage {
                    items,
                    revision: page.revision,
                    continue_after: None,
                    remaining: None,
                });
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// An unfiltered page as the objects' JSON bytes (resourceVersion
    /// included), for responses that need no decoding.
    pub async fn list_raw(
        &self,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<RawListPage> {
        let prefix = self.list_prefix(namespace);
        if let Some(after) = &opts.start_after {
            if after.contains("..") || after.starts_with('/') {
                return Err(StatusError::bad_request(format!(
                    "continue key is not valid: {after}"
                )));
            }
        }
        let page = self
            .store
            .list(
                &prefix,
                rkube_storage::ListOptions {
                    start_after: opts.start_after.as_ref().map(|s| format!("{prefix}{s}")),
                    limit: opts.limit,
                    revision: opts.revision,
                },
            )
            .await
            .map_err(|e| storage_error(self, "", e))?;
        let mut items = Vec::with_capacity(page.items.len());
        for kv in &page.items {
            // Converted objects must be decoded to be shown in this version.
            let raw = match self.conversion {
                None => Self::raw_with_rv(kv),
                Some(_) => None,
            };
            match raw {
                Some(raw) => items.push(raw),
                None => items
                    .push(serde_json::to_vec(&self.decode(kv)?).expect("JSON values serialize")),
            }
        }
        let continue_after = (page.more)
            .then(|| {
                page.items
                    .last()
                    .map(|kv| kv.key[prefix.len()..].to_string())
            })
            .flatten();
        let remaining = page.more.then_some(page.remaining);
        Ok(RawListPage {
            items,
            revision: page.revision,
            continue_after,
            remaining,
        })
    }

    /// The latest revision of the store, for lists of nothing.
    pub async fn current_revision(&self) -> Result<Revision> {
        self.store
            .current_revision()
            .await
            .map_err(|e| storage_error(self, "", e))
    }
}

#[cfg(test)]
mod tests {
    use rkube_storage::KeyValue;
    use serde_json::{json, Value};

    use crate::ResourceStore;

    fn kv(value: &Value, rev: i64) -> KeyValue {
        KeyValue {
            key: "/k".into(),
            value: serde_json::to_vec(value).unwrap(),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn raw_bytes_carry_the_resource_version() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"metadata": "x"}}, "data": {"k": "\"metadata\":{"}});
        let raw = ResourceStore::raw_with_rv(&kv(&obj, 42)).unwrap();
        let back: Value = serde_json::from_slice(&raw).unwrap();
        let mut expected = obj.clone();
        expected["metadata"]["resourceVersion"] = "42".into();
        assert_eq!(back, expected);
        let empty =
            ResourceStore::raw_with_rv(&kv(&json!({"kind": "X", "metadata": {}}), 7)).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&empty).unwrap()["metadata"],
            json!({"resourceVersion": "7"})
        );
        assert!(ResourceStore::raw_with_rv(&kv(&json!({"kind": "X"}), 7)).is_none());
    }

    #[test]
    fn raw_bytes_find_the_objects_own_metadata_after_nested_ones() {
        // A ControllerRevision: `data` sorts before `metadata` and holds a
        // pod template with its own metadata.
        let obj = json!({"apiVersion": "apps/v1", "data": {"spec": {"template": {
            "metadata": {"labels": {"a": "b"}}, "x": [1, "]}", {"y": null}]}}},
            "kind": "ControllerRevision", "metadata": {"name": "r"}, "revision": 2});
        let raw = ResourceStore::raw_with_rv(&kv(&obj, 9)).unwrap();
        let back: Value = serde_json::from_slice(&raw).unwrap();
        let mut expected = obj.clone();
        expected["metadata"]["resourceVersion"] = "9".into();
        assert_eq!(back, expected);
        let spaced = KeyValue {
            value: br#" { "kind" : "X" , "n" : -1.5e3, "t": true, "metadata" : { } } "#.to_vec(),
            ..kv(&json!({}), 3)
        };
        let back: Value =
            serde_json::from_slice(&ResourceStore::raw_with_rv(&spaced).unwrap()).unwrap();
        assert_eq!(back["metadata"]["resourceVersion"], "3");
        for bad in [
            &b"[]"[..],
            b"{\"metadata\": 1}",
            b"{\"a\": \"unterminated",
            b"{",
        ] {
            let kv = KeyValue {
                value: bad.to_vec(),
                ..kv(&json!({}), 3)
            };
            assert!(ResourceStore::raw_with_rv(&kv).is_none(), "{bad:?}");
        }
    }
}
