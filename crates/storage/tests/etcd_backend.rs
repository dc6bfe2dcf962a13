//! What is specific to the etcd backend: how it connects (and fails to),
//! that keys and revisions are etcd's own, and a smoke run of every method
//! against a real etcd. The behaviour both backends share is in the battery.

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rkube_storage::etcd::{EtcdConfig, EtcdStore};
use rkube_storage::{Error, EventKind, ListOptions, Store, WatchStream, MAX_VALUE_BYTES};
use support::etcd::EtcdServer;

/// Bound for anything that should happen promptly; failing beats hanging.
const DEADLINE: Duration = Duration::from_secs(20);

async fn connect(server: &EtcdServer) -> EtcdStore {
    let config = EtcdConfig {
        endpoints: vec![server.endpoint.clone()],
        ..Default::default()
    };
    EtcdStore::connect(&config)
        .await
        .expect("connect to the test etcd")
}

async fn next_item(
    watch: &mut WatchStream,
) -> Option<rkube_storage::Result<rkube_storage::WatchEvent>> {
    tokio::time::timeout(DEADLINE, watch.next())
        .await
        .expect("watch produced nothing in time")
}

fn etcdctl(server: &EtcdServer, args: &[&str]) -> String {
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", server.endpoint))
        .args(args)
        .output()
        .expect("run etcdctl");
    assert!(
        output.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("etcdctl prints UTF-8")
}

#[tokio::test]
async fn unreachable_endpoint_is_a_clear_error_in_bounded_time() {
    // A port nobody listens on: refused at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = EtcdConfig {
        endpoints: vec![endpoint.clone()],
        ..Default::default()
    };
    let started = Instant::now();
    let err = EtcdStore::connect(&config)
        .await
        .err()
        .expect("connect must fail");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("cannot reach etcd at {endpoint}")),
        "{message}"
    );
}

#[tokio::test]
async fn silent_endpoint_times_out_instead_of_hanging() {
    // Accepts TCP connections but never speaks HTTP/2, like a wedged peer.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let config = EtcdConfig {
        endpoints: vec![endpoint.clone()],
        ..Default::default()
    };
    let started = Instant::now();
    let err = EtcdStore::connect(&config)
        .await
        .err()
        .expect("connect must fail");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains(&endpoint), "{err}");
    drop(listener);
}

#[tokio::test]
async fn no_endpoints_and_bad_tls_files_are_clear_errors() {
    let err = EtcdStore::connect(&EtcdConfig::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("no etcd endpoints"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("client.crt");
    let key = dir.path().join("client.key");
    std::fs::write(&key, "not really a key").unwrap();
    let config = EtcdConfig {
        endpoints: vec!["https://127.0.0.1:2379".into()],
        cert_file: Some(missing.clone()),
        key_file: Some(key.clone()),
        ..Default::default()
    };
    let err = EtcdStore::connect(&config).await.err().unwrap();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("certificate file") && message.contains(&missing.display().to_string()),
        "{message}"
    );

    let config = EtcdConfig {
        endpoints: vec!["https://127.0.0.1:2379".into()],
        key_file: Some(key),
        ..Default::default()
    };
    let err = EtcdStore::connect(&config).await.err().unwrap();
    assert!(
        err.to_string()
            .contains("certificate and key must be given together"),
        "{err}"
    );
}

#[tokio::test]
async fn keys_and_revisions_are_etcds_own() {
    let server = EtcdServer::start();
    let store = connect(&server).await;
    assert_eq!(store.backend(), "etcd");

    let key = "/registry/configmaps/default/settings";
    let created = store.create(key, b"v1".to_vec(), None).await.unwrap();
    let printed = etcdctl(&server, &["get", "--prefix", "/registry/"]);
    assert_eq!(printed, format!("{key}\nv1\n"));

    // `fields` output names the revisions etcd keeps for the key.
    let fields = etcdctl(&server, &["get", key, "--write-out=fields"]);
    let field = |name: &str| -> i64 {
        let line = fields
            .lines()
            .find(|l| l.starts_with(&format!("\"{name}\" :")))
            .unwrap_or_else(|| panic!("no {name} in {fields}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(field("ModRevision"), created.mod_revision);
    assert_eq!(field("CreateRevision"), created.create_revision);
    assert_eq!(field("Revision"), store.current_revision().await.unwrap());

    // And what etcdctl writes, the store reads.
    etcdctl(
        &server,
        &["put", "/registry/configmaps/default/other", "by-hand"],
    );
    let (kv, _) = store
        .get("/registry/configmaps/default/other", None)
        .await
        .unwrap();
    assert_eq!(kv.unwrap().value, b"by-hand");
}

#[tokio::test]
async fn smoke_every_method() {
    let server = EtcdServer::start();
    let store = connect(&server).await;
    let p = "/registry/pods/smoke/";
    let start = store.current_revision().await.unwrap();

    // create / get
    let a = store
        .create(&format!("{p}a"), b"a1".to_vec(), None)
        .await
        .unwrap();
    assert!(a.mod_revision > start && a.create_revision == a.mod_revision);
    let err = store
        .create(&format!("{p}a"), b"again".to_vec(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    let (got, rev) = store.get(&format!("{p}a"), None).await.unwrap();
    assert_eq!(got.as_ref(), Some(&a));
    assert_eq!(rev, a.mod_revision);
    assert_eq!(store.get(&format!("{p}zz"), None).await.unwrap().0, None);

    // update: success keeps create_revision; stale and missing fail apart
    let a2 = store
        .update(&format!("{p}a"), b"a2".to_vec(), a.mod_revision, None)
        .await
        .unwrap();
    assert_eq!(
        (a2.create_revision, a2.value.as_slice()),
        (a.create_revision, &b"a2"[..])
    );
    assert!(a2.mod_revision > a.mod_revision);
    match store
        .update(&format!("{p}a"), b"x".to_vec(), a.mod_revision, None)
        .await
    {
        Err(Error::Conflict {
            expected, current, ..
        }) => {
            assert_eq!(expected, a.mod_revision);
            assert_eq!(*current, a2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let err = store
        .update(&format!("{p}nope"), b"x".to_vec(), 0, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(store.get(&format!("{p}nope"), None).await.unwrap().0, None);

    // get at a past revision sees the old value
    let (old, at) = store
        .get(&format!("{p}a"), Some(a.mod_revision))
        .await
        .unwrap();
    assert_eq!((old.unwrap().value, at), (b"a1".to_vec(), a.mod_revision));
    let err = store
        .get(&format!("{p}a"), Some(a2.mod_revision + 1000))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::FutureRevision { requested, current } if requested == a2.mod_revision + 1000 && current == a2.mod_revision),
        "{err:?}"
    );

    // list: pages from one snapshot, counts, start_after, prefix bounds
    for name in ["b", "c", "d"] {
        store
            .create(&format!("{p}{name}"), name.as_bytes().to_vec(), None)
            .await
            .unwrap();
    }
    store
        .create("/registry/pods/smoke0", b"outside".to_vec(), None)
        .await
        .unwrap();
    let first = store
        .list(
            p,
            ListOptions {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let keys = |items: &[rkube_storage::KeyValue]| {
        items.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>()
    };
    assert_eq!(keys(&first.items), [format!("{p}a"), format!("{p}b")]);
    assert!(first.more);
    assert_eq!(first.remaining, 2);
    store
        .create(&format!("{p}e"), b"later".to_vec(), None)
        .await
        .unwrap();
    let second = store
        .list(
            p,
            ListOptions {
                start_after: Some(format!("{p}b")),
                limit: 2,
                revision: Some(first.revision),
            },
        )
        .await
        .unwrap();
    assert_eq!(keys(&second.items), [format!("{p}c"), format!("{p}d")]);
    assert_eq!(
        (second.more, second.remaining, second.revision),
        (false, 0, first.revision)
    );
    assert_eq!(store.count(p).await.unwrap(), 5);
    assert_eq!(store.count("").await.unwrap(), 6);
    let everything = store.list("", ListOptions::default()).await.unwrap();
    assert_eq!(everything.items.len(), 6);
    let beyond = store
        .list(
            p,
            ListOptions {
                start_after: Some("/registry/pods/smoke0".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(beyond.items.is_empty() && !beyond.more, "{beyond:?}");

    // watch from the start sees history with kinds and previous values
    let mut watch = store.watch(p, start).await.unwrap();
    let first_event = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!(
        (first_event.kind, first_event.prev.clone()),
        (EventKind::Create, None)
    );
    assert_eq!(*first_event.kv, a);
    let second_event = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!(second_event.kind, EventKind::Update);
    assert_eq!(
        (second_event.kv.clone(), second_event.prev.clone()),
        (
            std::sync::Arc::new(a2.clone()),
            Some(std::sync::Arc::new(a.clone()))
        )
    );

    // delete: conditional, unconditional, missing
    let err = store
        .delete(&format!("{p}a"), Some(a.mod_revision))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { ref current, .. } if **current == a2),
        "{err:?}"
    );
    let (deleted, deleted_at) = store
        .delete(&format!("{p}a"), Some(a2.mod_revision))
        .await
        .unwrap();
    assert_eq!(deleted, a2);
    assert!(deleted_at > a2.mod_revision);
    let err = store.delete(&format!("{p}a"), None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");

    // the live part of the watch: skip the creates of b..e, then the delete
    let delete_event = loop {
        let event = next_item(&mut watch).await.unwrap().unwrap();
        if event.kind != EventKind::Create {
            break event;
        }
    };
    assert_eq!(delete_event.kind, EventKind::Delete);
    assert_eq!(delete_event.kv.key, format!("{p}a"));
    assert_eq!(delete_event.kv.value, b"a2");
    assert_eq!(delete_event.kv.create_revision, a.create_revision);
    assert_eq!(delete_event.kv.mod_revision, deleted_at);
    assert_eq!(delete_event.prev.as_deref(), Some(&a2));
    drop(watch);

    // compaction: old reads and watches fail with etcd's compact revision
    let now = store.current_revision().await.unwrap();
    store.compact(now).await.unwrap();
    store.compact(now).await.unwrap();
    store.compact(a.mod_revision).await.unwrap();
    let err = store
        .get(&format!("{p}b"), Some(a.mod_revision))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == a.mod_revision && compacted == now),
        "{err:?}"
    );
    let err = store
        .list(
            p,
            ListOptions {
                revision: Some(start),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Compacted { compacted, .. } if compacted == now),
        "{err:?}"
    );
    let mut watch = store.watch(p, start).await.unwrap();
    match next_item(&mut watch).await {
        Some(Err(Error::Compacted {
            requested,
            compacted,
        })) => assert_eq!((requested, compacted), (start, now)),
        other => panic!("expected Compacted first, got {other:?}"),
    }
    assert!(
        next_item(&mut watch).await.is_none(),
        "the stream ends after the error"
    );
    assert_eq!(
        store.count(p).await.unwrap(),
        4,
        "compaction keeps the latest values"
    );

    // size limit is checked before anything is sent
    let err = store
        .create(&format!("{p}big"), vec![0; MAX_VALUE_BYTES + 1], None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn ttl_keys_expire_with_a_delete_event() {
    let server = EtcdServer::start();
    let store = connect(&server).await;
    let key = "/registry/events/default/short-lived";
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/events/", from).await.unwrap();
    let kv = store
        .create(key, b"e".to_vec(), Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(
        next_item(&mut watch).await.unwrap().unwrap().kind,
        EventKind::Create
    );
    // The TTL rounds up to etcd's minimum lease (1.5 s with default
    // timings); expiry follows within a second or two.
    let expired = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!(expired.kind, EventKind::Delete);
    assert_eq!(
        (expired.kv.key.as_str(), expired.kv.value.as_slice()),
        (key, &b"e"[..])
    );
    assert_eq!(expired.prev.as_deref(), Some(&kv));
    assert_eq!(store.get(key, None).await.unwrap().0, None);

    // An update without a TTL makes a key permanent again.
    let kv = store
        .create(key, b"e".to_vec(), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    store
        .update(key, b"kept".to_vec(), kv.mod_revision, None)
        .await
        .unwrap();
    let event = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!(event.kind, EventKind::Create);
    let event = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!(event.kind, EventKind::Update);
    let quiet = tokio::time::timeout(Duration::from_secs(3), watch.next()).await;
    assert!(quiet.is_err(), "the key must not expire: {quiet:?}");
}

#[tokio::test]
async fn watch_ends_with_an_error_when_etcd_dies_and_the_store_recovers() {
    let mut server = EtcdServer::start();
    let store = connect(&server).await;
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/", from).await.unwrap();
    let kv = store
        .create("/registry/a/b/c", b"1".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(*next_item(&mut watch).await.unwrap().unwrap().kv, kv);

    server.kill();
    let item = next_item(&mut watch).await;
    assert!(
        matches!(item, Some(Err(Error::Etcd { op: "watch", .. }))),
        "{item:?}"
    );
    assert!(next_item(&mut watch).await.is_none());
    let err = store.get("/registry/a/b/c", None).await.unwrap_err();
    assert!(
        matches!(err, Error::Etcd { op: "get", .. } | Error::Unavailable(_)),
        "{err:?}"
    );

    // The same store reconnects once etcd is back; a re-watch resumes.
    server.restart();
    let deadline = Instant::now() + DEADLINE;
    let (got, _) = loop {
        match store.get("/registry/a/b/c", None).await {
            Ok(found) => break found,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!("store did not recover: {err}"),
        }
    };
    assert_eq!(got, Some(kv.clone()));
    let updated = store
        .update("/registry/a/b/c", b"2".to_vec(), kv.mod_revision, None)
        .await
        .unwrap();
    let mut watch = store.watch("/registry/", kv.mod_revision).await.unwrap();
    let event = next_item(&mut watch).await.unwrap().unwrap();
    assert_eq!((event.kind, &*event.kv), (EventKind::Update, &updated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_one_store() {
    let server = EtcdServer::start();
    let store = std::sync::Arc::new(connect(&server).await);
    let key = "/registry/counters/default/shared";
    store.create(key, b"0".to_vec(), None).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 5 {
                let (current, _) = store.get(key, None).await.unwrap();
                let current = current.unwrap();
                let n: u64 = std::str::from_utf8(&current.value)
                    .unwrap()
                    .parse()
                    .unwrap();
                match store
                    .update(
                        key,
                        (n + 1).to_string().into_bytes(),
                        current.mod_revision,
                        None,
                    )
                    .await
                {
                    Ok(_) => done += 1,
                    Err(Error::Conflict { .. }) => {}
                    Err(err) => panic!("{err}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (kv, _) = store.get(key, None).await.unwrap();
    assert_eq!(
        kv.unwrap().value,
        b"80",
        "every successful CAS counted exactly once"
    );
}

#[tokio::test]
async fn dropping_a_watch_cancels_it_in_etcd() {
    let server = EtcdServer::start();
    let store = connect(&server).await;
    let watchers = || -> i64 {
        let metrics = http_get(&server.endpoint, "/metrics");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .map(|v| v.trim().parse::<f64>().unwrap() as i64)
            .unwrap_or_else(|| panic!("no watcher gauge in metrics"))
    };
    let baseline = watchers();
    let watch = store.watch("/registry/", 0).await.unwrap();
    assert_eq!(watchers(), baseline + 1);
    drop(watch);
    let deadline = Instant::now() + DEADLINE;
    while watchers() != baseline {
        assert!(Instant::now() < deadline, "etcd still has the watch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP/1.0 GET against etcd's client port (it serves /metrics
/// there too).
fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let server = EtcdServer::start_tls();
    let tls = server.tls.clone().expect("a TLS server has client files");
    assert!(
        server.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        server.endpoint
    );
    let config = EtcdConfig {
        endpoints: vec![server.endpoint.clone()],
        ca_file: Some(tls.ca_file.clone()),
        cert_file: Some(tls.cert_file.clone()),
        key_file: Some(tls.key_file.clone()),
    };
    let store = EtcdStore::connect(&config).await.expect("connect over TLS");
    let kv = store
        .create("/registry/secrets/default/s", b"x".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(store.get(&kv.key, None).await.unwrap().0, Some(kv));

    // The server demands a client certificate.
    let anonymous = EtcdConfig {
        cert_file: None,
        key_file: None,
        ..config.clone()
    };
    let started = Instant::now();
    let err = EtcdStore::connect(&anonymous)
        .await
        .err()
        .expect("no client certificate");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.to_string()
            .contains(&format!("cannot reach etcd at {}", server.endpoint)),
        "{err}"
    );

    // A server certificate from a CA we were not told to trust is refused.
    let untrusted = EtcdConfig {
        ca_file: None,
        ..config.clone()
    };
    let err = EtcdStore::connect(&untrusted)
        .await
        .err()
        .expect("untrusted server");
    assert!(err.to_string().contains("cannot reach etcd at"), "{err}");

    // TLS files with a plain-HTTP endpoint are a configuration mistake.
    let plain = EtcdConfig {
        endpoints: vec![server.endpoint.replace("https://", "http://")],
        ..config
    };
    let err = EtcdStore::connect(&plain)
        .await
        .err()
        .expect("TLS files with http://");
    assert!(err.to_string().contains("HTTPS"), "{err}");
}

#[tokio::test]
async fn ttl_writes_share_a_lease_and_survive_its_revocation() {
    let server = EtcdServer::start();
    let store = connect(&server).await;
    let lease_of = |key: &str| -> i64 {
        let fields = etcdctl(&server, &["get", key, "--write-out=fields"]);
        let line = fields
            .lines()
            .find(|l| l.starts_with("\"Lease\" :"))
            .unwrap_or_else(|| panic!("{fields}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let ttl = Some(Duration::from_secs(3600));
    store
        .create("/registry/events/ns/a", b"a".to_vec(), ttl)
        .await
        .unwrap();
    store
        .create("/registry/events/ns/b", b"b".to_vec(), ttl)
        .await
        .unwrap();
    let lease = lease_of("/registry/events/ns/a");
    assert_ne!(lease, 0);
    assert_eq!(
        lease_of("/registry/events/ns/b"),
        lease,
        "an hour-long TTL shares the lease"
    );
    // A different TTL gets its own lease.
    store
        .create(
            "/registry/events/ns/c",
            b"c".to_vec(),
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    assert_ne!(lease_of("/registry/events/ns/c"), lease);

    // Revoking the shared lease deletes its keys; the next write notices the
    // lease is gone and takes a new one instead of failing.
    etcdctl(&server, &["lease", "revoke", &format!("{lease:x}")]);
    assert_eq!(
        store.get("/registry/events/ns/a", None).await.unwrap().0,
        None
    );
    store
        .create("/registry/events/ns/d", b"d".to_vec(), ttl)
        .await
        .unwrap();
    let fresh = lease_of("/registry/events/ns/d");
    assert!(fresh != 0 && fresh != lease);
}

#[tokio::test]
async fn watch_on_a_hung_member_ends_with_an_error() {
    let mut server = EtcdServer::start();
    let store = connect(&server).await;
    let from = store.current_revision().await.unwrap();
    let mut watch = store.watch("/registry/", from).await.unwrap();
    store
        .create("/registry/x/y/z", b"1".to_vec(), None)
        .await
        .unwrap();
    assert!(next_item(&mut watch).await.unwrap().is_ok());

    // The TCP connection stays open but nothing answers: only the HTTP/2
    // keep-alive can tell, within its interval plus timeout (15 s).
    server.freeze();
    let started = Instant::now();
    let item = tokio::time::timeout(Duration::from_secs(40), watch.next()).await;
    server.thaw();
    let item = item.expect("the watch stalled on a hung member");
    assert!(
        matches!(item, Some(Err(Error::Etcd { op: "watch", .. }))),
        "{item:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "ended before any keep-alive could fail"
    );
}
