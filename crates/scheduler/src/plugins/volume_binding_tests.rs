use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, ObjectReference, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, PersistentVolumeStatus, Pod, PodSpec, Volume, VolumeNodeAffinity,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::framework::Code;
use crate::plugins::testutil::{node, pod};

fn claim(name: &str, class: &str, bound_to: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            volume_name: Some(bound_to.into()).filter(|s: &String| !s.is_empty()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".into(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A local-style volume of `size` in `class`, reachable from `on` only.
fn volume(name: &str, class: &str, size: &str, on: Option<&str>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            capacity: Some(BTreeMap::from([("storage".into(), Quantity(size.into()))])),
            node_affinity: on.map(|n| VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![n.into()]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        }),
    }
}

fn class(name: &str, wait: bool, provisioner: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(
            if wait {
                "WaitForFirstConsumer"
            } else {
                "Immediate"
            }
            .into(),
        ),
        ..Default::default()
    }
}

fn host(name: &str) -> NodeInfo {
    node(name, &[("kubernetes.io/hostname", name)])
}

struct World(VolumeTables);

impl World {
    fn new() -> World {
        let w = World(VolumeTables::default());
        w.class(class("local", true, NO_PROVISIONER));
        w.class(class("fast", false, "example.com/fast"));
        w.class(class("made", true, "example.com/made"));
        w
    }
    fn claim(&self, c: PersistentVolumeClaim) {
        let name = c.metadata.name.clone().unwrap();
        self.0.claims.set("default", &name, Some(Arc::new(c)));
    }
    fn volume(&self, v: PersistentVolume) {
        let name = v.metadata.name.clone().unwrap();
        self.0.volumes.set("", &name, Some(Arc::new(v)));
    }
    fn class(&self, s: StorageClass) {
        let name = s.metadata.name.clone().unwrap();
        self.0.classes.set("", &name, Some(Arc::new(s)));
    }
    fn pod(&self, claims: &[&str]) -> PodInfo {
        let mut p = pod("p", &[]);
        p.volumes = Some(Box::new(PodClaims {
            names: claims.iter().map(|c| c.to_string()).collect(),
            tables: self.0.clone(),
        }));
        p
    }
}

/// PreFilter, then Filter over each node: the names of nodes that pass,
/// and the reasons of those that fail.
fn run(p: &PodInfo, nodes: &[NodeInfo]) -> Result<(Vec<String>, Vec<String>), Status> {
    let mut st = CycleState::default();
    VolumeBinding.pre_filter(&mut st, p, &crate::cache::Cache::default())?;
    let mut fit = Vec::new();
    let mut reasons = Vec::new();
    for n in nodes {
        let s = VolumeBinding.filter(&st, p, n);
        if s.is_success() {
            fit.push(n.name.clone());
        } else {
            assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
            reasons.extend(s.reasons);
        }
    }
    Ok((fit, reasons))
}

#[test]
fn claim_names_cover_claims_and_ephemeral_volumes() {
    let v = |name: &str| Volume {
        name: name.into(),
        ..Default::default()
    };
    let mut a = v("data");
    a.persistent_volume_claim = Some(Default::default());
    a.persistent_volume_claim.as_mut().unwrap().claim_name = "c1".into();
    let mut b = v("scratch");
    b.ephemeral = Some(Default::default());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            volumes: Some(vec![a.clone(), b, a, v("empty")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(claim_names(&pod), vec!["c1", "web-scratch"]);
}

#[test]
fn missing_deleting_and_unbound_immediate_claims_reject_the_pod() {
    let w = World::new();
    let nodes = [host("a")];
    let s = run(&w.pod(&["nope"]), &nodes).unwrap_err();
    assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(s.reasons, vec!["persistentvolumeclaim \"nope\" not found"]);
    assert_eq!(s.plugin, NAME);

    w.claim(claim("imm", "fast", ""));
    let s = run(&w.pod(&["imm"]), &nodes).unwrap_err();
    assert_eq!(s.reasons, vec![UNBOUND_IMMEDIATE]);
    // A claim without a class is Immediate too.
    w.claim(claim("plain", "", ""));
    assert_eq!(
        run(&w.pod(&["plain"]), &nodes).unwrap_err().reasons,
        vec![UNBOUND_IMMEDIATE]
    );

    let mut gone = claim("gone", "fast", "pv");
    gone.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    w.claim(gone);
    assert_eq!(
        run(&w.pod(&["gone"]), &nodes).unwrap_err().reasons,
        vec!["persistentvolumeclaim \"gone\" is being deleted"]
    );
}

#[test]
fn a_bound_volume_pins_the_pod_to_the_nodes_it_admits() {
    let w = World::new();
    w.volume(volume("pv-b", "local", "1Gi", Some("b")));
    w.claim(claim("c", "local", "pv-b"));
    let nodes = [host("a"), host("b"), host("c")];
    let (fit, reasons) = run(&w.pod(&["c"]), &nodes).unwrap();
    assert_eq!(fit, vec!["b"]);
    assert_eq!(reasons, vec![NODE_CONFLICT, NODE_CONFLICT]);

    // A volume without affinity admits every node; one that is gone none.
    w.volume(volume("pv-any", "fast", "1Gi", None));
    w.claim(claim("any", "fast", "pv-any"));
    assert_eq!(run(&w.pod(&["any"]), &nodes).unwrap().0.len(), 3);
    w.claim(claim("lost", "fast", "pv-missing"));
    let (fit, reasons) = run(&w.pod(&["lost"]), &nodes).unwrap();
    assert!(fit.is_empty());
    assert_eq!(reasons[0], PV_NOT_EXIST);
}

#[test]
fn wait_for_first_consumer_needs_a_free_matching_volume_on_the_node() {
    let w = World::new();
    w.claim(claim("c", "local", ""));
    let nodes = [host("a"), host("b")];
    let (fit, reasons) = run(&w.pod(&["c"]), &nodes).unwrap();
    assert!(fit.is_empty());
    assert_eq!(reasons, vec![BIND_CONFLICT, BIND_CONFLICT]);

    // Too small, of another class, or bound elsewhere: still nothing.
    w.volume(volume("small", "local", "100Mi", Some("a")));
    w.volume(volume("other", "fast", "5Gi", Some("a")));
    let mut held = volume("held", "local", "5Gi", Some("a"));
    held.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
        name: Some("someone".into()),
        namespace: Some("default".into()),
        ..Default::default()
    });
    held.status.as_mut().unwrap().phase = Some("Bound".into());
    w.volume(held);
    assert!(run(&w.pod(&["c"]), &nodes).unwrap().0.is_empty());

    w.volume(volume("fits", "local", "2Gi", Some("b")));
    let (fit, reasons) = run(&w.pod(&["c"]), &nodes).unwrap();
    assert_eq!(fit, vec!["b"]);
    assert_eq!(reasons, vec![BIND_CONFLICT]);

    // Two claims cannot share the one volume on b.
    w.claim(claim("d", "local", ""));
    assert!(run(&w.pod(&["c", "d"]), &nodes).unwrap().0.is_empty());
    w.volume(volume("fits2", "local", "3Gi", Some("b")));
    assert_eq!(run(&w.pod(&["c", "d"]), &nodes).unwrap().0, vec!["b"]);
}

#[test]
fn a_provisioning_class_fits_every_node_and_claims_get_the_node() {
    let w = World::new();
    w.claim(claim("c", "made", ""));
    let nodes = [host("a"), host("b")];
    assert_eq!(run(&w.pod(&["c"]), &nodes).unwrap().0, vec!["a", "b"]);

    let p = w.pod(&["c"]);
    assert_eq!(claims_to_annotate(&p, "a"), vec!["c"]);
    let mut named = claim("c", "made", "");
    named.metadata.annotations = Some(BTreeMap::from([(SELECTED_NODE.into(), "a".into())]));
    w.claim(named);
    assert!(claims_to_annotate(&p, "a").is_empty(), "already names a");
    assert_eq!(claims_to_annotate(&p, "b"), vec!["c"]);
    // Bound or Immediate claims are left alone.
    w.claim(claim("c", "made", "pv"));
    w.claim(claim("imm", "fast", ""));
    assert!(claims_to_annotate(&w.pod(&["c", "imm"]), "a").is_empty());
}

#[test]
fn pods_without_claims_skip_the_plugin() {
    let p = pod("p", &[]);
    assert_eq!(run(&p, &[host("a")]).unwrap().0, vec!["a"]);
}

#[test]
fn pre_bind_waits_for_every_claim_and_sees_a_provisioner_give_up() {
    let w = World::new();
    let waiting = |claim: &str, names_node: bool| ClaimsState::Waiting {
        claim: claim.into(),
        names_node,
    };
    w.claim(claim("late", "made", ""));
    w.claim(claim("imm", "fast", "pv-imm"));
    let p = w.pod(&["imm", "late"]);
    // Not yet annotated (the scheduler's watch lags its own patch).
    assert_eq!(claims_state(&p, "a"), waiting("late", false));
    let mut named = claim("late", "made", "");
    named.metadata.annotations = Some(BTreeMap::from([(SELECTED_NODE.into(), "a".into())]));
    w.claim(named);
    assert_eq!(claims_state(&p, "a"), waiting("late", true));
    // Annotated with another node, or the annotation removed: not ours.
    assert_eq!(claims_state(&p, "b"), waiting("late", false));
    w.claim(claim("late", "made", "pv-late"));
    assert_eq!(claims_state(&p, "a"), ClaimsState::Bound);
    // An unbound Immediate claim counts as waiting on any node.
    w.claim(claim("imm", "fast", ""));
    assert_eq!(claims_state(&p, "a"), waiting("imm", true));
    assert_eq!(claims_state(&pod("none", &[]), "a"), ClaimsState::Bound);
}
