//! Durability and exclusive use of the SQLite backend's file.
//!
//! Upstream counterpart: etcd's and kine's promise that an acknowledged
//! write survives the process dying (k3s users pull the plug on small
//! boxes), and k3s refusing to start a second server on one data dir.
//!
//! The crash test re-executes this test binary as a child that writes keys
//! in a loop and prints each acknowledged revision, kills it with SIGKILL in
//! the middle of that, and reopens the file. The child is the `#[ignore]`d
//! test `child_writer`, which does nothing unless `RKUBE_DURABILITY_DB`
//! names the database to write.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rkube_storage::sqlite::SqliteStore;
use rkube_storage::Store;

const DB_ENV: &str = "RKUBE_DURABILITY_DB";
const CHILD_TEST: &str = "child_writer";
/// How many acknowledgements the parent waits for before killing the child.
const ACKS_BEFORE_KILL: usize = 200;
/// Concurrent writer tasks in the child, so that acknowledgements come out
/// of group commits of several writes and not only of single ones.
const CHILD_WRITERS: u64 = 4;
/// How long the child may take to start and to acknowledge each write.
const DEADLINE: Duration = Duration::from_secs(30);

fn key(i: u64) -> String {
    format!("/registry/configmaps/durability/k{i:08}")
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-{}", "x".repeat((i % 97) as usize)).into_bytes()
}

/// The child: `CHILD_WRITERS` tasks create keys forever, printing
/// `ack <i> <revision>` once each create has returned (task `t` writes the
/// keys `i` with `i % CHILD_WRITERS == t`). A no-op in an ordinary test run.
#[test]
#[ignore = "the child process of the tests below"]
fn child_writer() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(Path::new(&path)).expect("child opens the database");
        let store = std::sync::Arc::new(store);
        let mut tasks = Vec::new();
        for t in 0..CHILD_WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..).step_by(CHILD_WRITERS as usize) {
                    let kv = store
                        .create(&key(i), value(i), None)
                        .await
                        .expect("child write");
                    // println! takes the stdout lock for the whole line, and
                    // stdout is line-buffered: once this line is out, the
                    // parent may count the write as acknowledged.
                    println!("ack {i} {}", kv.mod_revision);
                }
            }));
        }
        for task in tasks {
            task.await.expect("child writer task");
        }
    });
}

/// A running child writer; killed on drop so a failing test leaves no
/// process behind.
struct Writer {
    child: Child,
    acks: mpsc::Receiver<(u64, i64)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn spawn(db: &Path) -> Writer {
        let exe = std::env::current_exe().expect("path of this test binary");
        let mut child = Command::new(exe)
            .args([
                "--exact",
                CHILD_TEST,
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(DB_ENV, db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child writer");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, acks) = mpsc::channel();
        // A thread turns the pipe into a channel so the parent can wait with
        // a deadline instead of blocking on a read.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's own lines ("running 1 test") are not acks.
                let Some(rest) = line.strip_prefix("ack ") else {
                    continue;
                };
                let mut parts = rest.split(' ');
                let i = parts
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("ack index");
                let rev = parts
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("ack revision");
                if tx.send((i, rev)).is_err() {
                    break;
                }
            }
        });
        Writer {
            child,
            acks,
            reader: Some(reader),
        }
    }

    fn next_ack(&mut self) -> (u64, i64) {
        match self.acks.recv_timeout(DEADLINE) {
            Ok(ack) => ack,
            Err(err) => {
                let status = self.child.try_wait();
                panic!("no acknowledgement from the child writer ({err}); child status {status:?}")
            }
        }
    }

    /// SIGKILL the child, then return every acknowledgement it printed
    /// before it died.
    fn kill(mut self) -> Vec<(u64, i64)> {
        self.child.kill().expect("SIGKILL the child"); // std sends SIGKILL on Unix
        self.child.wait().expect("reap the child");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("reader thread");
        }
        self.acks.try_iter().collect()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("rkube-durability-")
        .tempdir()
        .expect("temp dir");
    let path = dir.path().join("state.db");
    (dir, path)
}

#[tokio::test]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    let (_dir, db) = temp_db();
    let mut writer = Writer::spawn(&db);
    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        acks.push(writer.next_ack());
    }
    acks.extend(writer.kill());
    assert!(acks.len() >= ACKS_BEFORE_KILL);
    let mut revisions = std::collections::HashSet::new();
    let mut last_of_task = std::collections::HashMap::new();
    for &(i, rev) in &acks {
        assert!(
            revisions.insert(rev),
            "two writes acknowledged at revision {rev}"
        );
        // Each task's writes are sequential: its keys and revisions ascend.
        if let Some((prev_i, prev_rev)) = last_of_task.insert(i % CHILD_WRITERS, (i, rev)) {
            assert_eq!(i, prev_i + CHILD_WRITERS, "acks of one task in order");
            assert!(rev > prev_rev, "revisions of one task increase");
        }
    }

    // The dead process's lock is gone with it; everything it acknowledged
    // is there, with the revision it was acknowledged at.
    let store = SqliteStore::open(&db).unwrap_or_else(|e| panic!("reopen after SIGKILL: {e}"));
    for &(i, rev) in &acks {
        let (kv, _) = store.get(&key(i), None).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged write {i} (revision {rev}) was lost"));
        assert_eq!(kv.value, value(i), "value of write {i}");
        assert_eq!(kv.mod_revision, rev, "revision of write {i}");
    }
    let last = acks.iter().map(|&(_, rev)| rev).max().unwrap();
    assert!(store.current_revision().await.unwrap() >= last);
    // At most the writes in flight at the kill went in unacknowledged.
    let stored = store
        .count("/registry/configmaps/durability/")
        .await
        .unwrap();
    assert!(
        stored >= acks.len() as i64,
        "{stored} keys for {} acks",
        acks.len()
    );
    // And the reopened store takes writes again, after the old ones.
    let kv = store
        .create("/registry/configmaps/durability/after", b"x".to_vec(), None)
        .await;
    assert!(kv.unwrap().mod_revision > last);
}

#[test]
fn sqlite_garbage_file_is_refused_and_named() {
    let (_dir, db) = temp_db();
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    let err = match SqliteStore::open(&db) {
        Ok(_) => panic!("a non-SQLite file was opened as a database"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        message.contains(&db.display().to_string()),
        "error names the file: {message}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        garbage,
        "the file is left as it was"
    );

    // A text file is no better.
    std::fs::write(&db, "this is not a database\n").unwrap();
    let err = SqliteStore::open(&db)
        .err()
        .expect("a text file is refused");
    assert!(err.to_string().contains(&db.display().to_string()), "{err}");
}

/// Open `db` on another thread, failing the test if that takes longer than
/// the deadline (a hang is the failure this guards against).
fn open_with_deadline(db: &Path) -> rkube_storage::Result<SqliteStore> {
    let (tx, rx) = mpsc::channel();
    let path = db.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(SqliteStore::open(&path));
    });
    rx.recv_timeout(DEADLINE)
        .expect("open returns instead of waiting for the lock")
}

fn assert_in_use(result: rkube_storage::Result<SqliteStore>, db: &Path) {
    let err = match result {
        Ok(_) => panic!("a database that is in use was opened a second time"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        message.contains(&db.display().to_string()),
        "error names the file: {message}"
    );
    assert!(
        message.contains("in use") || message.contains("locked"),
        "error says the database is in use: {message}"
    );
}

#[test]
fn sqlite_second_open_in_process_is_refused() {
    let (_dir, db) = temp_db();
    let first = SqliteStore::open(&db).unwrap();
    assert_in_use(open_with_deadline(&db), &db);
    // Still refused on a second try: the failed open took nothing over.
    assert_in_use(open_with_deadline(&db), &db);
    drop(first);
    open_with_deadline(&db).expect("open once the first store is dropped");
}

#[tokio::test]
async fn sqlite_open_while_another_process_writes_is_refused() {
    let (_dir, db) = temp_db();
    let mut writer = Writer::spawn(&db);
    let (i, _) = writer.next_ack();
    assert_in_use(open_with_deadline(&db), &db);
    // The child was not disturbed by the attempt: it goes on acknowledging.
    for _ in 0..20 {
        assert_ne!(writer.next_ack().0, i);
    }
    writer.kill();
    let store = open_with_deadline(&db).expect("open once the other process is gone");
    assert!(store.get(&key(i), None).await.unwrap().0.is_some());
}
