//! Volume ownership for `securityContext.fsGroup`: every file of a volume
//! the kubelet manages gets the group, group permissions and, on
//! directories, the setgid bit so new files inherit the group.
//!
//! Upstream counterpart: `pkg/volume/volume_linux.go`
//! (`SetVolumeOwnership`, `changeFilePermission`,
//! `skipPermissionChange`): masks rw 0660 / ro 0440, owner-executable
//! files and directories also get 0110, directories setgid; symlinks are
//! re-grouped but not chmod-ed; with `fsGroupChangePolicy:
//! OnRootMismatch` nothing is walked when the volume's root already has
//! the group and the permissions.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// `fsGroup` with its change policy, from the pod's security context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    pub gid: u32,
    /// `fsGroupChangePolicy: OnRootMismatch`.
    pub on_root_mismatch: bool,
}

impl FsGroup {
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod) -> Option<FsGroup> {
        let sc = pod.spec.as_ref()?.security_context.as_ref()?;
        let gid = u32::try_from(sc.fs_group?).ok()?;
        Some(FsGroup {
            gid,
            on_root_mismatch: sc.fs_group_change_policy.as_deref() == Some("OnRootMismatch"),
        })
    }
}

fn mask(read_only: bool, is_dir: bool, mode: u32) -> u32 {
    let mut m = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        m |= SETGID | EXEC_MASK;
    } else if mode & 0o100 != 0 {
        m |= EXEC_MASK;
    }
    m
}

/// Applies `group` to everything under `dir` (which must exist).
pub fn apply(dir: &Path, group: FsGroup, read_only: bool) -> io::Result<()> {
    let root = fs::metadata(dir)?;
    if group.on_root_mismatch {
        let want = mask(read_only, true, root.mode());
        if root.gid() == group.gid && root.mode() & want == want {
            return Ok(());
        }
    }
    walk(dir, group.gid, read_only)
}

fn walk(path: &Path, gid: u32, read_only: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    std::os::unix::fs::lchown(path, None, Some(gid))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    let want = mode | mask(read_only, meta.is_dir(), mode);
    if want != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(want))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), gid, read_only)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn groups_and_modes_as_upstream() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("vol");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("sub/f"), "x").unwrap();
        fs::set_permissions(root.join("sub/f"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(root.join("run"), "x").unwrap();
        fs::set_permissions(root.join("run"), fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("sub/f", root.join("link")).unwrap();
        let g = FsGroup {
            gid: 4321,
            on_root_mismatch: false,
        };
        apply(&root, g, false).unwrap();
        assert_eq!(mode(&root), 0o2775);
        assert_eq!(mode(&root.join("sub")), 0o2775);
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        assert_eq!(mode(&root.join("run")), 0o770);
        for p in ["", "sub", "sub/f", "run", "link"] {
            let m = fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!(m.gid(), 4321, "{p}");
        }
        // Read-only volumes (configMap, secret) get read access only.
        let ro = t.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::write(ro.join("key"), "v").unwrap();
        fs::set_permissions(ro.join("key"), fs::Permissions::from_mode(0o644)).unwrap();
        apply(&ro, g, true).unwrap();
        assert_eq!(mode(&ro.join("key")), 0o644);
        assert_eq!(fs::metadata(ro.join("key")).unwrap().gid(), 4321);
    }

    #[test]
    fn on_root_mismatch_skips_a_matching_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("vol");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("f"), "x").unwrap();
        let g = FsGroup {
            gid: 777,
            on_root_mismatch: true,
        };
        apply(&root, g, false).unwrap();
        assert_eq!(fs::metadata(root.join("f")).unwrap().gid(), 777);
        // A file changed behind our back stays as it is: the root matches.
        std::os::unix::fs::lchown(root.join("f"), None, Some(0)).unwrap();
        apply(&root, g, false).unwrap();
        assert_eq!(fs::metadata(root.join("f")).unwrap().gid(), 0);
        // With the default policy (Always) it is fixed again.
        let always = FsGroup {
            on_root_mismatch: false,
            ..g
        };
        apply(&root, always, false).unwrap();
        assert_eq!(fs::metadata(root.join("f")).unwrap().gid(), 777);
    }
}
