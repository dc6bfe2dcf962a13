use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::*;

fn pv(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), Q(size.into()))].into()),
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            storage_class_name: class.map(Into::into),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        }),
    }
}

fn pvc(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Q(size.into()))].into()),
                ..Default::default()
            }),
            storage_class_name: class.map(Into::into),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn claim_ref(c: &PersistentVolumeClaim, uid: bool) -> ObjectReference {
    ObjectReference {
        kind: Some("PersistentVolumeClaim".into()),
        namespace: c.metadata.namespace.clone(),
        name: c.metadata.name.clone(),
        uid: if uid { c.metadata.uid.clone() } else { None },
        ..Default::default()
    }
}

fn all(v: Vec<PersistentVolume>) -> Vec<Arc<PersistentVolume>> {
    v.into_iter().map(Arc::new).collect()
}

const RWO: &[&str] = &["ReadWriteOnce"];

#[test]
fn the_smallest_fitting_volume_of_the_same_class_wins() {
    let volumes = all(vec![
        pv("big", "10Gi", RWO, None),
        pv("small", "1Gi", RWO, None),
        pv("tiny", "100Mi", RWO, None),
        pv("classy", "1Gi", RWO, Some("fast")),
        pv("rox", "1Gi", &["ReadOnlyMany"], None),
    ]);
    let c = pvc("data", "500Mi", RWO, None);
    let none = HashMap::new();
    assert_eq!(
        plan_claim(&c, &volumes, &none, None, None),
        ClaimPlan::Bind("small".into())
    );
    let fast = pvc("data", "500Mi", RWO, Some("fast"));
    assert_eq!(
        plan_claim(&fast, &volumes, &none, None, None),
        ClaimPlan::Bind("classy".into())
    );
    // A volume another claim is being bound to is skipped.
    let taken: HashMap<String, String> =
        [("small".to_string(), "default/other".to_string())].into();
    assert_eq!(
        plan_claim(&c, &volumes, &taken, None, None),
        ClaimPlan::Bind("big".into())
    );
    let rwx = pvc("data", "1Mi", &["ReadWriteMany"], None);
    assert!(matches!(
        plan_claim(&rwx, &volumes, &none, None, None),
        ClaimPlan::Pending(Some((false, "FailedBinding", m))) if m.contains("no storage class is set")
    ));
}

#[test]
fn selectors_and_prebinding_are_honoured() {
    let mut labelled = pv("labelled", "5Gi", RWO, None);
    labelled.metadata.labels = Some(BTreeMap::from([("tier".into(), "db".into())]));
    let mut c = pvc("data", "1Gi", RWO, None);
    c.spec.as_mut().unwrap().selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("tier".into(), "db".into())])),
        ..Default::default()
    });
    let volumes = all(vec![pv("plain", "1Gi", RWO, None), labelled]);
    let none = HashMap::new();
    assert_eq!(
        plan_claim(&c, &volumes, &none, None, None),
        ClaimPlan::Bind("labelled".into())
    );
    // A volume pre-bound to the claim by a user beats a smaller free one.
    let c = pvc("mine", "1Gi", RWO, None);
    let mut pre = pv("pre", "9Gi", RWO, None);
    pre.spec.as_mut().unwrap().claim_ref = Some(claim_ref(&c, false));
    let mut other = pv("other", "1Gi", RWO, None);
    other.spec.as_mut().unwrap().claim_ref = Some(claim_ref(&pvc("x", "1Gi", RWO, None), true));
    let volumes = all(vec![other, pv("free", "1Gi", RWO, None), pre]);
    assert_eq!(
        plan_claim(&c, &volumes, &none, None, None),
        ClaimPlan::Bind("pre".into())
    );
}

#[test]
fn claims_with_a_class_wait_with_the_right_reason() {
    let c = pvc("data", "1Gi", RWO, Some("local"));
    let none = HashMap::new();
    assert!(matches!(
        plan_claim(&c, &[], &none, None, None),
        ClaimPlan::Pending(Some((true, "ProvisioningFailed", m))) if m.contains("\"local\" not found")
    ));
    let wffc = ClassInfo {
        provisioner: "kubernetes.io/no-provisioner".into(),
        wait_for_first_consumer: true,
    };
    assert!(matches!(
        plan_claim(&c, &[], &none, Some(&wffc), None),
        ClaimPlan::Pending(Some((false, "WaitForFirstConsumer", _)))
    ));
}

fn bound_pair() -> (PersistentVolume, PersistentVolumeClaim) {
    let mut c = pvc("data", "1Gi", RWO, None);
    let mut v = pv("vol", "1Gi", RWO, None);
    v.spec.as_mut().unwrap().claim_ref = Some(claim_ref(&c, true));
    v.status.as_mut().unwrap().phase = Some("Bound".into());
    c.spec.as_mut().unwrap().volume_name = Some("vol".into());
    c.status.as_mut().unwrap().phase = Some("Bound".into());
    c.metadata.annotations = Some(BTreeMap::from([(BIND_COMPLETED.into(), "yes".into())]));
    (v, c)
}

#[test]
fn a_bound_pair_rests_and_half_bindings_finish() {
    let (v, c) = bound_pair();
    let none = HashMap::new();
    let volumes = all(vec![v.clone()]);
    assert_eq!(
        plan_claim(&c, &volumes, &none, None, None),
        ClaimPlan::Nothing
    );
    assert_eq!(plan_volume(&v, Some(&c)), VolumePlan::Nothing);
    // The claim side not written yet: the claim finishes it; the volume
    // waits as Available.
    let mut half = c.clone();
    half.spec.as_mut().unwrap().volume_name = None;
    half.status.as_mut().unwrap().phase = Some("Pending".into());
    assert_eq!(
        plan_claim(&half, &volumes, &none, None, None),
        ClaimPlan::Bind("vol".into())
    );
    let mut fresh = v.clone();
    fresh.status.as_mut().unwrap().phase = Some("Pending".into());
    assert_eq!(
        plan_volume(&fresh, Some(&half)),
        VolumePlan::Phase("Available", None)
    );
}

#[test]
fn volumes_are_released_or_fail_by_policy_and_claims_are_lost() {
    let (v, c) = bound_pair();
    assert_eq!(plan_volume(&v, None), VolumePlan::Phase("Released", None));
    // A new claim of the same name is not the one it was bound to.
    let mut again = c.clone();
    again.metadata.uid = Some("uid-new".into());
    assert_eq!(
        plan_volume(&v, Some(&again)),
        VolumePlan::Phase("Released", None)
    );
    let mut delete = v.clone();
    delete
        .spec
        .as_mut()
        .unwrap()
        .persistent_volume_reclaim_policy = Some("Delete".into());
    assert!(matches!(
        plan_volume(&delete, None),
        VolumePlan::Phase("Failed", Some(m)) if m.contains("no volume plugin matched")
    ));
    // A provisioned one waits Released for its provisioner to delete it.
    let mut provisioned = delete.clone();
    provisioned.metadata.annotations = Some(
        [(
            PROVISIONED_BY.to_string(),
            "rancher.io/local-path".to_string(),
        )]
        .into(),
    );
    assert_eq!(
        plan_volume(&provisioned, None),
        VolumePlan::Phase("Released", None)
    );
    let mut released = v.clone();
    released.status.as_mut().unwrap().phase = Some("Released".into());
    assert_eq!(plan_volume(&released, None), VolumePlan::Nothing);
    // A free volume is Available; a bound claim whose volume is gone is Lost.
    assert_eq!(
        plan_volume(&pv("new", "1Gi", RWO, None), None),
        VolumePlan::Nothing
    );
    let mut pending = pv("new", "1Gi", RWO, None);
    pending.status.as_mut().unwrap().phase = Some("Pending".into());
    assert_eq!(
        plan_volume(&pending, None),
        VolumePlan::Phase("Available", None)
    );
    let none = HashMap::new();
    assert!(matches!(
        plan_claim(&c, &[], &none, None, None),
        ClaimPlan::Lost(m) if m.contains("lost its PersistentVolume")
    ));
}

#[test]
fn a_controller_binding_to_a_claim_gone_elsewhere_is_undone() {
    let (mut v, mut c) = bound_pair();
    c.spec.as_mut().unwrap().volume_name = Some("another".into());
    v.metadata.annotations = Some(BTreeMap::from([(BOUND_BY_CONTROLLER.into(), "yes".into())]));
    assert_eq!(plan_volume(&v, Some(&c)), VolumePlan::Unbind);
    v.metadata.annotations = None;
    assert_eq!(
        plan_volume(&v, Some(&c)),
        VolumePlan::Phase("Released", None)
    );
}

#[test]
fn wait_for_first_consumer_binds_on_the_consumers_node() {
    use k8s_openapi::api::core::v1::{
        NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, VolumeNodeAffinity,
    };
    let on = |name: &str, host: &str, size: &str| {
        let mut v = pv(name, size, RWO, Some("local"));
        v.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(vec![host.into()]),
                    }]),
                    match_fields: None,
                }],
            }),
        });
        v
    };
    // The smaller volume is on the other node.
    let volumes = all(vec![
        on("a-big", "node-a", "5Gi"),
        on("b-small", "node-b", "1Gi"),
    ]);
    let c = pvc("data", "1Gi", RWO, Some("local"));
    let wffc = ClassInfo {
        provisioner: "kubernetes.io/no-provisioner".into(),
        wait_for_first_consumer: true,
    };
    let none = HashMap::new();
    assert!(matches!(
        plan_claim(&c, &volumes, &none, Some(&wffc), None),
        ClaimPlan::Pending(Some((false, "WaitForFirstConsumer", _)))
    ));
    let node = |n: &str| Consumer {
        node: n.into(),
        labels: BTreeMap::from([("kubernetes.io/hostname".into(), n.into())]),
    };
    assert_eq!(
        plan_claim(&c, &volumes, &none, Some(&wffc), Some(&node("node-a"))),
        ClaimPlan::Bind("a-big".into())
    );
    assert!(matches!(
        plan_claim(&c, &volumes, &none, Some(&wffc), Some(&node("node-c"))),
        ClaimPlan::Pending(Some((true, "FailedBinding", m))) if m.contains("node-c")
    ));
    // A class that provisions hands the claim to its provisioner.
    let local_path = ClassInfo {
        provisioner: "rancher.io/local-path".into(),
        wait_for_first_consumer: true,
    };
    assert!(matches!(
        plan_claim(&c, &volumes, &none, Some(&local_path), Some(&node("node-c"))),
        ClaimPlan::Pending(Some((false, "ExternalProvisioning", m))) if m.contains("'rancher.io/local-path'")
    ));
    // Immediate binding ignores node affinity, as upstream.
    assert_eq!(
        plan_claim(&c, &volumes, &none, None, Some(&node("node-c"))),
        ClaimPlan::Bind("b-small".into())
    );
    // matchFields on the node's name; an empty term admits nothing.
    let mut by_name = pv("n", "1Gi", RWO, None);
    by_name.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
        required: Some(NodeSelector {
            node_selector_terms: vec![
                NodeSelectorTerm::default(),
                NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec!["node-a".into()]),
                    }]),
                },
            ],
        }),
    });
    assert!(admits(&by_name, &node("node-a")));
    assert!(!admits(&by_name, &node("node-b")));
    assert!(admits(&pv("free", "1Gi", RWO, None), &node("node-b")));
}
