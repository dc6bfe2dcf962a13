//! Reading and writing the PEM files of the PKI directory.
//!
//! Upstream counterpart: k3s `pkg/util` and client-go `util/cert`
//! (`WriteCert`, `WriteKey`): certificates are world-readable (0644), keys
//! and tokens owner-only (0600), and the directory holding them 0700.
//!
//! Writes go to a temporary sibling and are renamed into place, so a crash
//! mid-write never leaves a half-written key that the next start would then
//! report as corrupt.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Failures touching the filesystem; every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("creating directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
}

/// Mode for private keys, tokens and kubeconfigs.
pub const PRIVATE: u32 = 0o600;
/// Mode for certificates, which are public.
pub const PUBLIC: u32 = 0o644;

/// Reads a UTF-8 file; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| Error::Read {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Creates `dir` and its parents; a directory this creates gets `mode`.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| Error::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Atomically replaces `path` with `contents`, with permission `mode`.
///
/// Parent directories are created (0700) when missing. The mode is set
/// explicitly after creation because the process umask may have narrowed
/// or (for PUBLIC) the old file may have had another mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent, 0o700)?;
    }
    let tmp = tmp_sibling(path);
    let write_err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        // Best effort: the temporary file is ours and useless now.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(write_err)
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_sets_mode_and_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/key.pem");
        write_atomic(&path, b"secret", PRIVATE).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let parent = fs::metadata(dir.path().join("a/b")).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o700);
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("secret"));
    }

    #[test]
    fn rewrite_narrows_mode_of_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_atomic(&path, b"one", PUBLIC).unwrap();
        write_atomic(&path, b"two", PRIVATE).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&path).unwrap(), b"two");
    }

    #[test]
    fn missing_file_is_none_and_unreadable_names_path() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("nope")).unwrap().is_none());
        let bad = dir.path().join("bin");
        fs::write(&bad, [0xff, 0xfe, 0x00]).unwrap();
        let err = read_optional(&bad).unwrap_err().to_string();
        assert!(err.contains("bin"), "{err}");
    }
}
