use serde_json::{json, Value};

use super::{aggregate, limits, priority, quota};

fn pod(resources: Value) -> Value {
    json!({"metadata": {"name": "p", "namespace": "ns"},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
}

fn quota_obj(hard: Value, used: Value) -> Value {
    json!({"metadata": {"name": "q"}, "spec": {"hard": hard.clone()},
           "status": {"hard": hard, "used": used}})
}

#[test]
fn priority_comes_from_the_class_or_the_global_default() {
    let classes = [
        json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
        json!({"metadata": {"name": "low"}, "value": 10, "globalDefault": true}),
    ];
    let mut spec = json!({"priorityClassName": "high"});
    let spec = spec.as_object_mut().unwrap();
    priority::admit(spec, Some(&classes[0])).unwrap();
    assert_eq!(spec["priority"], 1000);
    assert_eq!(spec["preemptionPolicy"], "Never");

    let mut spec = json!({});
    let spec = spec.as_object_mut().unwrap();
    priority::admit(spec, priority::global_default(&classes)).unwrap();
    assert_eq!(spec["priorityClassName"], "low");
    assert_eq!(spec["priority"], 10);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");

    let mut spec = json!({"priorityClassName": "nope"});
    assert_eq!(
        priority::admit(spec.as_object_mut().unwrap(), None).unwrap_err(),
        "no PriorityClass with name nope was found"
    );
    let mut spec = json!({"priorityClassName": "high", "priority": 5});
    let err = priority::admit(spec.as_object_mut().unwrap(), Some(&classes[0])).unwrap_err();
    assert!(
        err.starts_with("the integer value of priority (5) must not be provided"),
        "{err}"
    );
    let mut spec = json!({});
    priority::admit(spec.as_object_mut().unwrap(), None).unwrap();
    assert_eq!(spec["priority"], 0);
}

#[test]
fn limit_ranges_default_containers_and_note_it() {
    let range = json!({"spec": {"limits": [{"type": "Container",
        "default": {"cpu": "500m", "memory": "128Mi"},
        "defaultRequest": {"cpu": "100m"}}]}});
    let mut p = pod(json!({"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}));
    limits::default_pod(&mut p, &[range]);
    let r = &p["spec"]["containers"][0]["resources"];
    assert_eq!(r["limits"], json!({"cpu": "500m", "memory": "64Mi"}));
    assert_eq!(r["requests"], json!({"cpu": "100m", "memory": "64Mi"}));
    assert_eq!(
        p["metadata"]["annotations"][limits::ANNOTATION],
        "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
    );
}

#[test]
fn limit_range_violations_read_as_upstream() {
    let range = json!({"spec": {"limits": [{"type": "Container",
        "min": {"cpu": "100m"}, "max": {"memory": "1Gi"},
        "maxLimitRequestRatio": {"cpu": "2"}}]}});
    let p = pod(json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "1", "memory": "2Gi"}}));
    let errs = limits::validate_pod(&p, std::slice::from_ref(&range));
    assert_eq!(
        errs,
        [
            "minimum cpu usage per Container is 100m, but request is 50m",
            "maximum memory usage per Container is 1Gi, but limit is 2Gi",
            "cpu max limit to request ratio per Container is 2, but provided ratio is 20.000000",
        ]
    );
    assert_eq!(aggregate(&errs[..1]), errs[0]);
    assert!(aggregate(&errs).starts_with("[minimum cpu"));
    let ok = pod(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}));
    assert!(limits::validate_pod(&ok, &[range]).is_empty());
    let claims =
        json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}});
    let claim = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    assert_eq!(
        limits::validate_claim(&claim, &[claims]),
        ["maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"]
    );
}

#[test]
fn quota_charges_until_the_hard_limit() {
    let q = quota_obj(
        json!({"pods": "2", "requests.cpu": "1"}),
        json!({"pods": "1", "requests.cpu": "500m"}),
    );
    let p = pod(json!({"requests": {"cpu": "300m"}}));
    let usage = quota::usage("", "pods", &p);
    let used = quota::charge(&q, true, &p, &usage).unwrap().unwrap();
    assert_eq!(used["pods"], "2");
    assert_eq!(used["requests.cpu"], "800m");

    let big = pod(json!({"requests": {"cpu": "600m"}}));
    let err = quota::charge(&q, true, &big, &quota::usage("", "pods", &big)).unwrap_err();
    assert_eq!(
        err,
        "exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
    );
}

#[test]
fn quota_needs_stated_resources_and_known_usage() {
    let q = quota_obj(
        json!({"limits.memory": "1Gi", "requests.cpu": "1"}),
        json!({"limits.memory": "0", "requests.cpu": "0"}),
    );
    let p = pod(json!({}));
    let err = quota::charge(&q, true, &p, &quota::usage("", "pods", &p)).unwrap_err();
    assert_eq!(
        err,
        "failed quota: q: must specify limits.memory for: c; requests.cpu for: c"
    );
    let fresh =
        json!({"metadata": {"name": "q"}, "status": {"hard": {"pods": "1", "configmaps": "1"}}});
    let err = quota::charge(&fresh, true, &p, &quota::usage("", "pods", &p)).unwrap_err();
    assert_eq!(err, "status unknown for quota: q, resources: pods");
    // Not yet seen by the controller (no status.hard): not enforced.
    let unsynced = json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}});
    assert_eq!(
        quota::charge(&unsynced, true, &p, &quota::usage("", "pods", &p)),
        Ok(None)
    );
}

#[test]
fn object_counts_services_and_claims() {
    let q = quota_obj(
        json!({"count/configmaps": "1", "services.nodeports": "1", "requests.storage": "1Gi"}),
        json!({"count/configmaps": "1", "services.nodeports": "0", "requests.storage": "512Mi"}),
    );
    let cm = json!({"metadata": {"name": "c"}});
    let err = quota::charge(&q, false, &cm, &quota::usage("", "configmaps", &cm)).unwrap_err();
    assert!(
        err.contains(
            "requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
        ),
        "{err}"
    );
    let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
    let err = quota::charge(&q, false, &svc, &quota::usage("", "services", &svc)).unwrap_err();
    assert!(err.contains("requested: services.nodeports=2"), "{err}");
    let claim = json!({"spec": {"resources": {"requests": {"storage": "256Mi"}}}});
    let used = quota::charge(
        &q,
        false,
        &claim,
        &quota::usage("", "persistentvolumeclaims", &claim),
    )
    .unwrap()
    .unwrap();
    assert_eq!(used["requests.storage"], "768Mi");
    assert_eq!(
        quota::count_name("apps", "deployments"),
        "count/deployments.apps"
    );
}

#[test]
fn scoped_quotas_select_pods_by_scope() {
    let mut q = quota_obj(json!({"pods": "0"}), json!({"pods": "0"}));
    q["spec"]["scopes"] = json!(["BestEffort"]);
    let burstable = pod(json!({"requests": {"cpu": "1"}}));
    assert_eq!(
        quota::charge(&q, true, &burstable, &quota::usage("", "pods", &burstable)),
        Ok(None)
    );
    let best_effort = pod(json!({}));
    assert!(quota::charge(
        &q,
        true,
        &best_effort,
        &quota::usage("", "pods", &best_effort)
    )
    .is_err());
    let cm = json!({});
    assert_eq!(
        quota::charge(&q, false, &cm, &quota::usage("", "configmaps", &cm)),
        Ok(None)
    );
}

#[test]
fn updates_charge_only_growth_of_services_and_claims() {
    let old = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
    let new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
    let delta = quota::update_delta("", "services", &new, &old);
    assert_eq!(delta.keys().collect::<Vec<_>>(), ["services.nodeports"]);
    let small = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
    let big = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    let delta = quota::update_delta("", "persistentvolumeclaims", &big, &small);
    assert_eq!(
        crate::resources::quantity::format(delta["requests.storage"].0, true),
        "2Gi"
    );
    assert!(quota::update_delta("", "persistentvolumeclaims", &small, &big).is_empty());
    assert!(quota::update_delta("", "configmaps", &new, &old).is_empty());
}
