//! Writing a volume's files so that readers never see a half-updated set:
//! files go into a fresh hidden directory, a `..data` symlink is swapped
//! to it with one rename, and the visible names are symlinks through
//! `..data`. That is how configMap and secret updates reach running
//! containers.
//!
//! Upstream counterpart: `pkg/volume/util/atomic_writer.go` (same layout,
//! so tools that know it find `..data`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path};
use std::time::{SystemTime, UNIX_EPOCH};

const DATA: &str = "..data";

/// One file of the payload: contents and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative, clean, not hidden: what a payload path must be.
pub fn valid_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with("..")
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Makes `dir` hold exactly `payload`. Returns whether anything changed.
pub fn write(dir: &Path, payload: &BTreeMap<String, File>) -> io::Result<bool> {
    for p in payload.keys() {
        if !valid_path(p) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path {p:?}"),
            ));
        }
    }
    fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA);
    let old = fs::read_link(&data_link).ok();
    if let Some(old) = &old {
        if current(&dir.join(old))? == *payload {
            return Ok(false);
        }
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let ts_name = format!("..{stamp}");
    let ts_dir = dir.join(&ts_name);
    fs::create_dir(&ts_dir)?;
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755))?;
    for (p, f) in payload {
        let path = ts_dir.join(p);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, &f.data)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(f.mode))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    symlink(&ts_name, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;
    // Visible names: one symlink per top-level entry.
    let tops: std::collections::BTreeSet<String> = payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p).to_string())
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(top), &link)?;
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || tops.contains(&name) {
            continue;
        }
        if entry.file_type()?.is_symlink() {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

/// The payload a data directory holds now.
fn current(dir: &Path) -> io::Result<BTreeMap<String, File>> {
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, File>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), &format!("{name}/"), out)?;
        } else {
            out.insert(
                name,
                File {
                    data: fs::read(entry.path())?,
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(items: &[(&str, &str)]) -> BTreeMap<String, File> {
        items
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    File {
                        data: v.as_bytes().to_vec(),
                        mode: 0o644,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn swaps_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(write(d, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        assert!(!write(d, &payload(&[("a", "1"), ("sub/b", "2")])).unwrap());
        assert!(write(d, &payload(&[("a", "3")])).unwrap());
        assert_eq!(fs::read_to_string(d.join("a")).unwrap(), "3");
        assert!(fs::symlink_metadata(d.join("sub")).is_err());
        // Only the live timestamped dir remains.
        let hidden: Vec<_> = fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("..") && n != DATA
            })
            .collect();
        assert_eq!(hidden.len(), 1);
    }

    #[test]
    fn refuses_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &payload(&[("../x", "1")])).is_err());
        assert!(write(dir.path(), &payload(&[("/x", "1")])).is_err());
        assert!(write(dir.path(), &payload(&[("..data", "1")])).is_err());
    }
}
