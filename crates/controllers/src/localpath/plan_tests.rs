use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;
use crate::persistentvolume::binder::{admits, best_match, satisfies, Consumer};

fn class(provisioner: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some("local-path".into()),
            ..Default::default()
        },
        provisioner: provisioner.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

fn claim(modes: &[&str], node: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data-web-0".into()),
            namespace: Some("apps".into()),
            uid: Some("1234-abcd".into()),
            resource_version: Some("42".into()),
            annotations: node.map(|n| BTreeMap::from([(SELECTED_NODE.to_string(), n.into())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            storage_class_name: Some("local-path".into()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("2Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn node(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Node {
    let map = |kv: &[(&str, &str)]| {
        Some(
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    };
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: map(labels),
            annotations: map(annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn provisions_claims_of_our_class_once_the_scheduler_picked_a_node() {
    let ours = class(PROVISIONER);
    let c = claim(&["ReadWriteOnce"], Some("node-a"));
    assert_eq!(
        decide(&c, Some(&ours), false),
        Decision::Provision {
            node: "node-a".into()
        }
    );
    // Not yet: no node chosen.
    assert_eq!(
        decide(&claim(&["ReadWriteOnce"], None), Some(&ours), false),
        Decision::Skip
    );
    // Not ours, no class, or already made.
    assert_eq!(
        decide(&c, Some(&class("example.com/other")), false),
        Decision::Skip
    );
    assert_eq!(decide(&c, None, false), Decision::Skip);
    assert_eq!(decide(&c, Some(&ours), true), Decision::Skip);
    // Bound, or going away.
    let mut bound = c.clone();
    bound.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
    assert_eq!(decide(&bound, Some(&ours), false), Decision::Skip);
    let mut deleting = c.clone();
    deleting.metadata.deletion_timestamp = Some(Time(Default::default()));
    assert_eq!(decide(&deleting, Some(&ours), false), Decision::Skip);
    // Handed over: both annotations name us.
    assert!(!names_provisioner(&c));
    let mut named = c.clone();
    let mut annotate = |k: &str| {
        let a = named
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        a.insert(k.into(), PROVISIONER.into());
        names_provisioner(&named)
    };
    assert!(!annotate(STORAGE_PROVISIONER));
    assert!(annotate(BETA_STORAGE_PROVISIONER));
    // ReadWriteOncePod is a single-node mode too.
    assert!(matches!(
        decide(&claim(&["ReadWriteOncePod"], Some("n")), Some(&ours), false),
        Decision::Provision { .. }
    ));
}

#[test]
fn refuses_modes_a_node_local_directory_cannot_keep() {
    let ours = class(PROVISIONER);
    for mode in ["ReadWriteMany", "ReadOnlyMany"] {
        let c = claim(&["ReadWriteOnce", mode], Some("node-a"));
        match decide(&c, Some(&ours), false) {
            Decision::Refuse(m) => assert!(m.contains(mode), "{m}"),
            other => panic!("{mode}: {other:?}"),
        }
    }
    let mut block = claim(&["ReadWriteOnce"], Some("node-a"));
    block.spec.as_mut().unwrap().volume_mode = Some("Block".into());
    assert!(matches!(
        decide(&block, Some(&ours), false),
        Decision::Refuse(m) if m.contains("Block")
    ));
}

#[test]
fn the_volume_is_pinned_to_the_node_and_already_claimed() {
    let c = claim(&["ReadWriteOnce"], Some("node-a"));
    let v = build_volume(
        &c,
        &class(PROVISIONER),
        "host-a",
        Path::new("/data/storage"),
    );
    assert_eq!(v.metadata.name.as_deref(), Some("pvc-1234-abcd"));
    assert_eq!(
        v.metadata.annotations.as_ref().unwrap()[PROVISIONED_BY],
        PROVISIONER
    );
    let spec = v.spec.as_ref().unwrap();
    let host = spec.host_path.as_ref().unwrap();
    assert_eq!(host.path, "/data/storage/pvc-1234-abcd_apps_data-web-0");
    assert_eq!(host.type_.as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.capacity.as_ref().unwrap()["storage"].0, "2Gi");
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    let r = spec.claim_ref.as_ref().unwrap();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("apps"), Some("data-web-0"), Some("1234-abcd"))
    );
    // The class's Retain carries over.
    let mut retain = class(PROVISIONER);
    retain.reclaim_policy = Some("Retain".into());
    let kept = build_volume(&c, &retain, "host-a", Path::new("/s"));
    assert_eq!(
        kept.spec
            .unwrap()
            .persistent_volume_reclaim_policy
            .as_deref(),
        Some("Retain")
    );

    // The binder takes it for this claim on that node only.
    let at = |n: &str| Consumer {
        node: n.into(),
        labels: BTreeMap::from([("kubernetes.io/hostname".into(), format!("host-{n}"))]),
    };
    assert!(satisfies(&v, &c));
    assert!(admits(&v, &at("a")));
    assert!(!admits(&v, &at("b")));
    let volumes = vec![std::sync::Arc::new(v)];
    let picked = best_match(
        &c,
        &volumes,
        &Default::default(),
        "apps/data-web-0",
        Some(&at("a")),
    );
    assert_eq!(
        picked.and_then(|v| v.metadata.name.as_deref()),
        Some("pvc-1234-abcd")
    );
}

#[test]
fn nodes_say_where_their_volumes_live() {
    let real = node(
        "node-a",
        &[("kubernetes.io/hostname", "host-a")],
        &[(PATH_ANNOTATION, "/srv/agent/storage")],
    );
    assert_eq!(base_of(&real), Some(PathBuf::from("/srv/agent/storage")));
    assert_eq!(hostname_of(&real), "host-a");
    // A real node whose agent has not said yet: wait for it.
    assert_eq!(base_of(&node("node-b", &[], &[])), None);
    assert_eq!(hostname_of(&node("node-b", &[], &[])), "node-b");
    let sim = node("sim-0", &[("rkube.io/simulated", "true")], &[]);
    assert_eq!(base_of(&sim), Some(PathBuf::from(DEFAULT_BASE)));
}
