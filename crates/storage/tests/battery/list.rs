//! Lists: prefix ranges in byte order, paging with `limit` and a continue
//! key, snapshots at a fixed revision, counts. (Upstream: the apiserver's
//! `GetList` with `limit`/`continue`, which pages over etcd range requests
//! pinned to the first page's revision.)

use std::collections::BTreeMap;

use rkube_storage::{KeyValue, ListOptions, ListResponse, Revision, Store};

use crate::{prefix, Harness};

/// Create `names` under `p`, each valued by its name.
async fn create_all(s: &dyn Store, p: &str, names: &[&str]) -> BTreeMap<String, KeyValue> {
    let mut created = BTreeMap::new();
    for name in names {
        let key = format!("{p}{name}");
        let kv = s
            .create(&key, name.as_bytes().to_vec(), None)
            .await
            .unwrap();
        created.insert(key, kv);
    }
    created
}

fn keys(page: &ListResponse) -> Vec<&str> {
    page.items.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn list_prefix_isolation_and_order(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("list"); // /registry/configmaps/test-list/
                            // Created out of order; byte order puts upper case before lower case,
                            // `/` (0x2f) before `0` (0x30), and multi-byte UTF-8 after ASCII.
    let names = ["b", "B", "a0", "a", "a/b", "c-1", "c", "zz", "~", "é"];
    let created = create_all(s.as_ref(), &p, &names).await;
    // Neighbours that share the prefix as a string but not as a directory,
    // including the first key past the range (`test-list0`, the prefix end).
    let decoys = [
        "/registry/configmaps/test-list",
        "/registry/configmaps/test-listx",
        "/registry/configmaps/test-listx/a",
        "/registry/configmaps/test-list0/a",
        "/registry/configmaps/test-lis/a",
        "/registry/configmaps/test-lisu/a",
        "/registry/secrets/test-list/a",
    ];
    for key in decoys {
        s.create(key, b"decoy".to_vec(), None).await.unwrap();
    }
    let current = s.current_revision().await.unwrap();

    let page = s.list(&p, ListOptions::default()).await.unwrap();
    let expected: Vec<&KeyValue> = created.values().collect();
    assert_eq!(
        page.items.iter().collect::<Vec<_>>(),
        expected,
        "whole prefix, byte order"
    );
    let want_order =
        ["B", "a", "a/b", "a0", "b", "c", "c-1", "zz", "~", "é"].map(|n| format!("{p}{n}"));
    assert_eq!(
        keys(&page),
        want_order.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(page.revision, current);
    assert!(!page.more);
    assert_eq!(page.remaining, 0);
    assert_eq!(s.count(&p).await.unwrap(), names.len() as i64);

    // Narrower prefixes inside the range.
    let page = s
        .list(&format!("{p}a"), ListOptions::default())
        .await
        .unwrap();
    assert_eq!(
        keys(&page),
        [format!("{p}a"), format!("{p}a/b"), format!("{p}a0")]
    );
    let page = s
        .list(&format!("{p}a/"), ListOptions::default())
        .await
        .unwrap();
    assert_eq!(keys(&page), [format!("{p}a/b")]);
    assert_eq!(s.count(&format!("{p}a/")).await.unwrap(), 1);

    // A wider string prefix sees the decoys that start with it.
    let wide = "/registry/configmaps/test-list";
    let page = s.list(wide, ListOptions::default()).await.unwrap();
    let mut want: Vec<&str> = created.keys().map(String::as_str).collect();
    want.extend(decoys.iter().copied().filter(|k| k.starts_with(wide)));
    want.sort();
    assert_eq!(keys(&page), want);
    assert_eq!(s.count(wide).await.unwrap(), want.len() as i64);

    // A prefix nothing lives under.
    let empty = s
        .list(&prefix("nothing-here"), ListOptions::default())
        .await
        .unwrap();
    assert!(empty.items.is_empty());
    assert!(!empty.more);
    assert_eq!(empty.remaining, 0);
    assert_eq!(empty.revision, current);
    assert_eq!(s.count(&prefix("nothing-here")).await.unwrap(), 0);
}

pub async fn list_pages_with_limit_and_continue(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("paging");
    let names: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let created = create_all(s.as_ref(), &p, &names).await;
    let all: Vec<KeyValue> = created.values().cloned().collect();
    s.create(&format!("{}k", prefix("paging-after")), b"x".to_vec(), None)
        .await
        .unwrap();

    // 10 keys in pages of 3: 3+3+3+1.
    let mut start_after = None;
    let mut revision = None;
    let mut got = Vec::new();
    let expect = [(3, true, 7), (3, true, 4), (3, true, 1), (1, false, 0)];
    for (i, (len, more, remaining)) in expect.into_iter().enumerate() {
        let opts = ListOptions {
            start_after: start_after.clone(),
            limit: 3,
            revision,
        };
        let page = s.list(&p, opts).await.unwrap();
        assert_eq!(page.items.len(), len, "page {i}");
        assert_eq!(page.more, more, "page {i} more");
        assert_eq!(page.remaining, remaining, "page {i} remaining");
        if let Some(rev) = revision {
            assert_eq!(
                page.revision, rev,
                "page {i} is read at the pinned revision"
            );
        }
        revision = Some(page.revision);
        start_after = page.items.last().map(|kv| kv.key.clone());
        got.extend(page.items);
    }
    assert_eq!(got, all, "pages put together are the whole list");

    let rev = revision.unwrap();
    let page_of = |start_after: Option<&str>, limit: usize| ListOptions {
        start_after: start_after.map(|k| format!("{p}{k}")),
        limit,
        revision: Some(rev),
    };
    // A page that ends exactly at the last key has nothing more.
    let page = s.list(&p, page_of(Some("k06"), 3)).await.unwrap();
    assert_eq!(page.items, all[7..].to_vec());
    assert!(!page.more);
    assert_eq!(page.remaining, 0);
    // A continue key that does not exist starts at the next one.
    let page = s.list(&p, page_of(Some("k045"), 2)).await.unwrap();
    assert_eq!(page.items, all[5..7].to_vec());
    assert!(page.more);
    assert_eq!(page.remaining, 3);
    // Past the last key: an empty page.
    let page = s.list(&p, page_of(Some("k09"), 3)).await.unwrap();
    assert!(page.items.is_empty());
    assert!(!page.more);
    assert_eq!(page.remaining, 0);
    // No limit, and a limit larger than what is there.
    for limit in [0, 10, 11, 1000] {
        let page = s.list(&p, page_of(None, limit)).await.unwrap();
        assert_eq!(page.items, all, "limit {limit}");
        assert!(!page.more, "limit {limit}");
        assert_eq!(page.remaining, 0, "limit {limit}");
    }
    // One at a time.
    let page = s.list(&p, page_of(None, 1)).await.unwrap();
    assert_eq!(page.items, all[..1].to_vec());
    assert!(page.more);
    assert_eq!(page.remaining, 9);
}

pub async fn list_pages_are_a_consistent_snapshot(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("snapshot");
    let names: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let before: Vec<KeyValue> = create_all(s.as_ref(), &p, &names)
        .await
        .into_values()
        .collect();

    let first = s
        .list(
            &p,
            ListOptions {
                limit: 4,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rev: Revision = first.revision;
    assert_eq!(first.items, before[..4].to_vec());
    assert_eq!(first.remaining, 6);

    // Between pages: a delete, an update and creates, both in pages not read
    // yet and in the page already read.
    let k = |n: &str| format!("{p}{n}");
    s.delete(&k("k05"), None).await.unwrap();
    s.delete(&k("k01"), None).await.unwrap();
    s.update(&k("k08"), b"changed".to_vec(), before[8].mod_revision, None)
        .await
        .unwrap();
    s.create(&k("k055"), b"new".to_vec(), None).await.unwrap();
    s.create(&k("k99"), b"new".to_vec(), None).await.unwrap();
    s.create(&k("k00a"), b"new".to_vec(), None).await.unwrap();

    let mut got = first.items.clone();
    let mut start_after = first.items.last().map(|kv| kv.key.clone());
    let mut pages = 1;
    loop {
        let opts = ListOptions {
            start_after: start_after.clone(),
            limit: 4,
            revision: Some(rev),
        };
        let page = s.list(&p, opts).await.unwrap();
        pages += 1;
        assert_eq!(page.revision, rev);
        assert_eq!(
            page.remaining,
            (before.len() - got.len() - page.items.len()) as i64
        );
        start_after = page.items.last().map(|kv| kv.key.clone());
        got.extend(page.items);
        if !page.more {
            break;
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(
        got, before,
        "later pages see the snapshot of the first, not the writes since"
    );

    // The latest list sees the writes.
    let latest = s.list(&p, ListOptions::default()).await.unwrap();
    assert!(latest.revision > rev);
    let names: Vec<&str> = latest.items.iter().map(|kv| &kv.key[p.len()..]).collect();
    assert_eq!(
        names,
        ["k00", "k00a", "k02", "k03", "k04", "k055", "k06", "k07", "k08", "k09", "k99"]
    );
    let k08 = latest.items.iter().find(|kv| kv.key == k("k08")).unwrap();
    assert_eq!(k08.value, b"changed");
    assert_eq!(s.count(&p).await.unwrap(), 11);
}

pub async fn count_follows_writes(h: &mut dyn Harness) {
    let s = h.store();
    let p = prefix("count");
    let neighbour = "/registry/configmaps/test-countx/a";
    s.create(neighbour, b"n".to_vec(), None).await.unwrap();
    assert_eq!(s.count(&p).await.unwrap(), 0);

    let mut kvs = Vec::new();
    for i in 0..7 {
        kvs.push(
            s.create(&format!("{p}{i}"), b"v".to_vec(), None)
                .await
                .unwrap(),
        );
        assert_eq!(s.count(&p).await.unwrap(), i + 1);
    }
    // Updates do not change the count; deletes do; recreates count again.
    s.update(&kvs[0].key, b"w".to_vec(), kvs[0].mod_revision, None)
        .await
        .unwrap();
    assert_eq!(s.count(&p).await.unwrap(), 7);
    s.delete(&kvs[1].key, None).await.unwrap();
    s.delete(&kvs[2].key, None).await.unwrap();
    assert_eq!(s.count(&p).await.unwrap(), 5);
    s.create(&kvs[1].key, b"again".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(s.count(&p).await.unwrap(), 6);
    // The count agrees with a list.
    let page = s.list(&p, ListOptions::default()).await.unwrap();
    assert_eq!(page.items.len(), 6);
    assert_eq!(s.count("/registry/configmaps/test-count").await.unwrap(), 7);
}
