//! Layer snapshots: each layer tar is unpacked into its own directory
//! `<root>/snapshots/<chain id hex>/`, ready to be stacked as an overlayfs
//! lowerdir.
//!
//! Upstream counterpart: containerd `archive/tar.go` with the overlay
//! whiteout converter (`archive.WithConvertWhiteout(overlay...)`) and the
//! overlayfs snapshotter. OCI whiteouts are turned into what overlayfs
//! understands: `.wh.<name>` becomes a 0/0 character device `<name>`, and
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
//! Because every layer lands in its own directory, layers can be unpacked
//! in any order and in parallel.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::oci::Digest;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Errors from unpacking layers and managing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer compression {0} is not supported (only gzip and uncompressed tar)")]
    UnsupportedCompression(&'static str),
    #[error("layer diff id mismatch: config says {expected}, uncompressed layer is {actual}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("unpack layer: read tar: {0}")]
    Tar(#[source] io::Error),
    #[error("unpack layer: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The snapshot directory tree under `<root>/snapshots`.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots, Error> {
        let dir = root.join("snapshots");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(Snapshots { dir })
    }

    /// The directory (overlayfs lowerdir) of a layer stack's top layer.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    pub fn contains(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// Unpacks a layer blob into the snapshot for `chain_id`, checking the
    /// uncompressed bytes against `diff_id`. The work happens in a
    /// temporary directory that is renamed into place only on success.
    pub fn create(
        &self,
        chain_id: &Digest,
        diff_id: &Digest,
        layer: impl Read,
    ) -> Result<(), Error> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempdir_in(&self.dir)
            .map_err(io_err("create", &self.dir))?;
        let actual = unpack_layer(layer, tmp.path())?;
        if actual != *diff_id {
            return Err(Error::DiffIdMismatch {
                expected: diff_id.clone(),
                actual,
            });
        }
        let target = self.path(chain_id);
        let tmp = tmp.keep();
        set_mode(&tmp, 0o755)?;
        if let Err(e) = fs::rename(&tmp, &target) {
            // Someone else finished the same snapshot first: keep theirs.
            let _ = fs::remove_dir_all(&tmp);
            if !target.is_dir() {
                return Err(Error::Io {
                    op: "publish",
                    path: target,
                    source: e,
                });
            }
        }
        Ok(())
    }

    pub fn remove(&self, chain_id: &Digest) -> Result<(), Error> {
        let path = self.path(chain_id);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
                op: "remove",
                path,
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every published snapshot; also deletes temporary directories left by
    /// interrupted unpacks when `clean` is set.
    pub fn list(&self, clean: bool) -> Result<Vec<Digest>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Ok(d) = format!("sha256:{name}").parse() {
                out.push(d);
            } else if clean && name.starts_with(".tmp-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        out.sort();
        Ok(out)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

/// Reads through to a sha256 so the diff id is known when the tar ends.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks one layer (gzip or plain tar, detected from its first bytes, so
/// mislabelled docker-save layers still work) into `dest`; returns the
/// digest of the uncompressed tar, i.e. the layer's diff id.
pub fn unpack_layer(layer: impl Read, dest: &Path) -> Result<Digest, Error> {
    let mut buffered = BufReader::with_capacity(256 * 1024, layer);
    let magic = buffered.fill_buf().map_err(Error::Tar)?;
    let tar: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            flate2::bufread::MultiGzDecoder::new(buffered),
        ))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(Error::UnsupportedCompression("zstd"));
    } else {
        Box::new(buffered)
    };
    let mut hashing = HashingReader {
        inner: tar,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        // Xattrs are applied below, without following symlinks and
        // without failing the layer when the filesystem refuses one.
        archive.set_unpack_xattrs(false);
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(Error::Tar)? {
            let mut entry = entry.map_err(Error::Tar)?;
            let path = entry.path().map_err(Error::Tar)?.into_owned();
            let Some(rel) = clean_path(&path) else {
                continue;
            };
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                let parent = dir_inside(dest, rel.parent().unwrap_or(Path::new("")))?;
                if name == OPAQUE {
                    set_opaque(&parent)?;
                } else if !hidden.starts_with(".wh.") {
                    // Other `.wh..wh.` names are aufs bookkeeping; skip them.
                    whiteout(&parent.join(hidden))?;
                }
                continue;
            }
            let xattrs = pax_xattrs(&mut entry);
            entry.unpack_in(dest).map_err(|e| Error::Io {
                op: "unpack",
                path: path.clone(),
                source: e,
            })?;
            for (key, value) in &xattrs {
                set_xattr(&dest.join(&rel), key, value);
            }
        }
    }
    // The diff id covers the whole stream, including the zero blocks after
    // the end-of-archive marker that `entries` does not read.
    io::copy(&mut hashing, &mut io::sink()).map_err(Error::Tar)?;
    Ok(Digest::from_sha256(hashing.hasher.finalize().as_slice()))
}

/// Strips `./` and refuses paths that climb out (`..`) or are absolute in
/// a way that is not just a leading `/`; `None` for the root entry itself.
fn clean_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Resolves (creating as needed) a directory below `dest` without following
/// symlinks, so a layer cannot aim a whiteout at a path outside its
/// snapshot through a symlink it planted earlier.
fn dir_inside(dest: &Path, rel: &Path) -> Result<PathBuf, Error> {
    let mut p = dest.to_path_buf();
    for part in rel.components() {
        p.push(part);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                let source = io::Error::other("not a directory (or a symlink) inside the layer");
                return Err(Error::Io {
                    op: "resolve",
                    path: p,
                    source,
                });
            }
            Err(_) => fs::create_dir(&p).map_err(io_err("create", &p))?,
        }
    }
    Ok(p)
}

fn cstring(path: &Path) -> Result<CString, Error> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Io {
        op: "encode",
        path: path.to_path_buf(),
        source: io::ErrorKind::InvalidInput.into(),
    })
}

/// `SCHILY.xattr.<name>` PAX records of an entry (how GNU tar and
/// containerd carry extended attributes in layers).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(CString, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    exts.filter_map(Result::ok)
        .filter_map(|e| {
            let key = e.key_bytes().strip_prefix(b"SCHILY.xattr.")?;
            Some((CString::new(key).ok()?, e.value_bytes().to_vec()))
        })
        .collect()
}

/// Sets one xattr on the unpacked path itself (never a symlink's target).
/// Failures are logged, not fatal: layers often carry attributes (SELinux
/// labels, capabilities on filesystems without them) that a given host
/// cannot store, and the image is still usable without them.
fn set_xattr(path: &Path, key: &CString, value: &[u8]) {
    let Ok(c) = cstring(path) else { return };
    // SAFETY: path and key are NUL-terminated and outlive the call; the
    // value pointer is valid for `value.len()` bytes.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        tracing::debug!(path = %path.display(), key = ?key, error = %err, "xattr not set");
    }
}

/// An overlayfs whiteout: a character device with device number 0/0.
fn whiteout(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io_err("replace", path))?,
        Ok(_) => fs::remove_file(path).map_err(io_err("replace", path))?,
        Err(_) => {}
    }
    let c = cstring(path)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call;
    // mknod does not retain the pointer.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if rc != 0 {
        return Err(Error::Io {
            op: "mknod whiteout",
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Marks a directory opaque for overlayfs: lower layers' entries are hidden.
fn set_opaque(dir: &Path) -> Result<(), Error> {
    let c = cstring(dir)?;
    let name = c"trusted.overlay.opaque";
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // value pointer is valid for the 1 byte passed as its length.
    let rc = unsafe { libc::lsetxattr(c.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
    if rc != 0 {
        return Err(Error::Io {
            op: "set opaque xattr on",
            path: dir.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes() {
        assert_eq!(clean_path(Path::new("./a/b")), Some(PathBuf::from("a/b")));
        assert_eq!(clean_path(Path::new("/a")), Some(PathBuf::from("a")));
        assert_eq!(clean_path(Path::new("./")), None);
        assert_eq!(clean_path(Path::new("a/../../etc")), None);
    }

    #[test]
    fn zstd_layers_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_layer(&[0x28u8, 0xb5, 0x2f, 0xfd, 0, 0][..], dir.path()).unwrap_err();
        assert!(err.to_string().contains("zstd is not supported"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack_layer(&[0x1fu8, 0x8b, 1, 2, 3][..], dir.path()).is_err());
    }
}
