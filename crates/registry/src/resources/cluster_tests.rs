use serde_json::json;

use super::*;

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

#[test]
fn pdbs_take_one_of_min_available_and_max_unavailable() {
    let both = json!({"spec": {"minAvailable": 1, "maxUnavailable": "150%",
                               "selector": {"matchLabels": {"a": "b"}}}});
    let errs = messages(&PdbStrategy.validate(&both));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"));
    assert_eq!(
        errs[1],
        r#"spec.maxUnavailable: Invalid value: "150%": must not be greater than 100%"#
    );
    let ok = json!({"spec": {"minAvailable": "50%", "unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    assert!(PdbStrategy.validate(&ok).is_empty());
    // Status is the disruption controller's: a create starts without it.
    let mut created = json!({"spec": {}, "status": {"disruptionsAllowed": 5}});
    PdbStrategy.prepare_for_create(&mut created);
    assert!(created.get("status").is_none());
}

#[test]
fn priority_class_values_are_fixed() {
    let mut pc = json!({"metadata": {"name": "high"}, "value": 1000});
    PriorityClassStrategy.prepare_for_create(&mut pc);
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
    let mut changed = pc.clone();
    changed["value"] = json!(2000);
    assert_eq!(
        messages(&PriorityClassStrategy.validate_update(&changed, &pc)),
        ["value: Forbidden: may not be changed in an update."]
    );
    let reserved = json!({"metadata": {"name": "system-mine"}, "value": 1});
    assert_eq!(
        messages(&PriorityClassStrategy.validate(&reserved)),
        [
            r#"metadata.name: Invalid value: "system-mine": priority class names with 'system-' prefix are reserved"#
        ]
    );
    let too_high = json!({"metadata": {"name": "x"}, "value": 2_000_000_000});
    assert_eq!(
        messages(&PriorityClassStrategy.validate(&too_high)),
        ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
    );
    for pc in system_priority_classes() {
        assert!(PriorityClassStrategy.validate(&pc).is_empty());
    }
}

#[test]
fn hpas_get_defaults_and_sane_bounds() {
    let v2 = HpaStrategy { v2: true };
    let mut hpa = json!({"spec": {"maxReplicas": 3, "scaleTargetRef": {"kind": "Deployment", "name": "web"}}});
    v2.prepare_for_create(&mut hpa);
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    assert!(v2.validate(&hpa).is_empty());
    let bad =
        json!({"spec": {"minReplicas": 4, "maxReplicas": 2, "scaleTargetRef": {"name": "web"}}});
    assert_eq!(
        messages(&v2.validate(&bad)),
        [
            "spec.scaleTargetRef.kind: Required value",
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`",
        ]
    );
    let v1 = HpaStrategy { v2: false };
    let mut plain = json!({"spec": {"maxReplicas": 3}});
    v1.prepare_for_create(&mut plain);
    assert!(plain["spec"].get("metrics").is_none());
}

#[test]
fn leases_last_a_positive_time() {
    let lease = json!({"spec": {"leaseDurationSeconds": 0}});
    assert_eq!(
        messages(&LeaseStrategy.validate(&lease)),
        ["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
    );
}

#[test]
fn runtime_class_handlers_are_fixed() {
    let rc = json!({"handler": "runc"});
    let other = json!({"handler": "crun"});
    assert_eq!(
        messages(&RuntimeClassStrategy.validate_update(&other, &rc)),
        [r#"handler: Invalid value: "crun": field is immutable"#]
    );
    assert_eq!(
        messages(&RuntimeClassStrategy.validate(&json!({}))),
        ["handler: Required value"]
    );
}
