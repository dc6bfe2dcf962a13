use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeSpec, PersistentVolumeStatus, VolumeNodeAffinity,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn volume(node: &str, path: &str, phase: &str, policy: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some("pvc-1".into()),
            uid: Some("u1".into()),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            host_path: Some(HostPathVolumeSource {
                path: path.into(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            persistent_volume_reclaim_policy: Some(policy.into()),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME.into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn me() -> HashSet<String> {
    HashSet::from(["node-a".to_string()])
}

const BASE: &str = "/data/storage";

#[test]
fn released_delete_volumes_of_this_node_are_reclaimed() {
    let base = Path::new(BASE);
    let dir = "/data/storage/pvc-1_default_data";
    assert_eq!(
        plan(&volume("node-a", dir, "Released", "Delete"), &me(), base),
        Step::Reclaim(dir.into())
    );
    // Retained data stays; other nodes' volumes are theirs.
    assert_eq!(
        plan(&volume("node-a", dir, "Released", "Retain"), &me(), base),
        Step::Nothing
    );
    assert_eq!(
        plan(&volume("node-b", dir, "Released", "Delete"), &me(), base),
        Step::Nothing
    );
    // Volumes in use get their directory.
    for phase in ["Pending", "Available", "Bound"] {
        assert_eq!(
            plan(&volume("node-a", dir, phase, "Delete"), &me(), base),
            Step::Create(dir.into())
        );
    }
    // Not provisioned by local-path: never touched.
    let mut manual = volume("node-a", dir, "Released", "Delete");
    manual.metadata.annotations = None;
    assert_eq!(plan(&manual, &me(), base), Step::Nothing);
}

#[test]
fn paths_outside_the_base_directory_are_refused() {
    let base = Path::new(BASE);
    for path in [
        "/etc",
        "/data/storage",
        "/data/storage/../../etc",
        "/data/storage/./x",
        "/data/storage/a/b",
        "data/storage/x",
        "/data/storage-other/x",
    ] {
        let v = volume("node-a", path, "Released", "Delete");
        assert!(
            matches!(plan(&v, &me(), base), Step::Refuse(m) if m.contains(path)),
            "{path}"
        );
        // Nor is anything made there.
        assert_eq!(
            plan(&volume("node-a", path, "Bound", "Delete"), &me(), base),
            Step::Nothing,
            "{path}"
        );
    }
    assert!(inside(base, Path::new("/data/storage/pvc-1_ns_name")));
}

#[test]
fn the_host_disk_makes_open_directories_and_removes_them_without_following_links() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("storage");
    let dir = base.join("pvc-1_default_data");
    HostDisk.create(&dir).unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o777);
    HostDisk.create(&dir).unwrap();
    // Data, and a link to something outside that must survive.
    let outside = tmp.path().join("precious");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"x").unwrap();
    std::fs::write(dir.join("file"), b"data").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
    HostDisk.remove(&dir).unwrap();
    assert!(!dir.exists());
    assert!(outside.join("keep").exists());
    // Already gone is fine.
    HostDisk.remove(&dir).unwrap();
    // A link put in the directory's place is not followed.
    std::os::unix::fs::symlink(&outside, &dir).unwrap();
    assert!(HostDisk.remove(&dir).is_err());
    assert!(outside.join("keep").exists());
}
