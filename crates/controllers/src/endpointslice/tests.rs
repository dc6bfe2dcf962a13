use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::reconcile::*;
use crate::endpoints::tests::{pod, service};

fn no_zone(_: &str) -> Option<String> {
    None
}

fn plan(pods: &[Arc<k8s_openapi::api::core::v1::Pod>], slices: &[Arc<EndpointSlice>]) -> Plan {
    let svc = service(json!({}));
    reconcile(&Snapshot {
        service: &svc,
        pods,
        slices,
        zone_of: &no_zone,
        trigger: None,
        max_per_slice: MAX_ENDPOINTS_PER_SLICE,
    })
}

/// Pretend the server stored `plan`'s writes: created slices get names.
fn apply(plan: &Plan, mut slices: Vec<Arc<EndpointSlice>>) -> Vec<Arc<EndpointSlice>> {
    slices.retain(|s| !plan.delete.contains(s.metadata.name.as_ref().unwrap()));
    for u in &plan.update {
        let i = slices
            .iter()
            .position(|s| s.metadata.name == u.metadata.name)
            .unwrap();
        slices[i] = Arc::new(u.clone());
    }
    for (n, c) in plan.create.iter().enumerate() {
        let mut c = c.clone();
        c.metadata.name = Some(format!("web-{}{n}", slices.len()));
        slices.push(Arc::new(c));
    }
    slices
}

fn pods(n: usize) -> Vec<Arc<k8s_openapi::api::core::v1::Pod>> {
    (0..n)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                true,
                json!({}),
            )
        })
        .collect()
}

#[test]
fn a_new_service_gets_one_labelled_owned_slice() {
    let p = plan(&pods(2), &[]);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 0));
    let s = &p.create[0];
    assert_eq!(s.address_type, "IPv4");
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], CONTROLLER_NAME);
    assert_eq!(labels["team"], "a", "service labels are copied");
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Service", Some(true), Some(true))
    );
    assert_eq!(s.endpoints.len(), 2);
    let port = &s.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080))
    );
    let c = s.endpoints[0].conditions.as_ref().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(true), Some(true), Some(false))
    );
    assert_eq!(s.endpoints[0].node_name.as_deref(), Some("node-a"));
}

#[test]
fn nothing_is_written_when_nothing_changed() {
    let all = pods(3);
    let slices = apply(&plan(&all, &[]), vec![]);
    assert!(plan(&all, &slices).is_empty());
}

#[test]
fn endpoints_are_split_at_one_hundred_and_only_changed_slices_are_written() {
    let mut all = pods(250);
    let slices = apply(&plan(&all, &[]), vec![]);
    let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    // One pod more fits into the slice with room: one update, no create.
    all.push(pod("extra", "10.42.9.9", true, json!({})));
    let p = plan(&all, &slices);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert_eq!(p.update[0].endpoints.len(), 51);
    let slices = apply(&p, slices);
    // A pod turning unready rewrites only its own slice.
    let victim = all[0].clone();
    all[0] = pod("p0", "10.42.0.1", false, json!({}));
    let p = plan(&all, &slices);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    let ep = p.update[0]
        .endpoints
        .iter()
        .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == victim.metadata.name.as_deref())
        .unwrap();
    assert_eq!(ep.conditions.as_ref().unwrap().ready, Some(false));
}

#[test]
fn terminating_pods_stay_listed_as_terminating_and_not_ready() {
    let going = pod(
        "a",
        "10.42.0.2",
        true,
        json!({"metadata": {"deletionTimestamp": "2024-01-01T00:01:00Z"}}),
    );
    let p = plan(&[going], &[]);
    let c = p.create[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(true), Some(true))
    );
}

#[test]
fn a_service_without_pods_keeps_one_placeholder_slice() {
    let p = plan(&[], &[]);
    assert_eq!(p.create.len(), 1);
    assert!(p.create[0].endpoints.is_empty() && p.create[0].ports.is_none());
    let slices = apply(&p, vec![]);
    assert!(
        plan(&[], &slices).is_empty(),
        "the placeholder stays as it is"
    );
    // Pods arriving rewrite the placeholder instead of create + delete.
    let p = plan(&pods(1), &slices);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert_eq!(p.update[0].endpoints.len(), 1);
    // And when they all go, the slice becomes the placeholder again.
    let slices = apply(&p, slices);
    let p = plan(&[], &slices);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert!(p.update[0].endpoints.is_empty());
}

#[test]
fn removed_pods_empty_and_delete_their_slice() {
    let all = pods(150);
    let slices = apply(&plan(&all, &[]), vec![]);
    assert_eq!(slices.len(), 2);
    let p = plan(&all[..100], &slices);
    // Whichever slice held the last 50 goes or shrinks; nothing is created.
    assert!(p.create.is_empty());
    let after = apply(&p, slices);
    let total: usize = after.iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(total, 100);
}
