//! The API server over SQLite in a temporary directory, for the tests
//! that drive requests through the router (watch_tests.rs,
//! write_tests.rs). Each test file adds its own request helpers to
//! `Fixture`.

use std::sync::Arc;

use crate::{ApiServer, Config, User};

pub(crate) struct Fixture {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) server: Arc<ApiServer>,
}

/// A bootstrapped server over SQLite in a temporary directory (tmpfs when
/// there is one, so timings are of the server's work rather than fsync).
pub(crate) async fn fixture() -> Fixture {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store = rkube_storage::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
    let server = ApiServer::new(Arc::new(store), &Config::default()).unwrap();
    server.bootstrap().await.unwrap();
    Fixture {
        _dir: dir,
        server: Arc::new(server),
    }
}

/// A cluster administrator (system:masters), as the requests' user.
pub(crate) fn admin() -> User {
    User {
        name: "admin".into(),
        groups: vec!["system:masters".into()],
    }
}
