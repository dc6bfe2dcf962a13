use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::matching::{self, Attributes, Operation};
use super::review::{self, Verdict};

fn attrs<'a>(op: Operation, resource: &'a str, sub: &'a str) -> Attributes<'a> {
    Attributes {
        operation: op,
        group: "",
        version: "v1",
        resource,
        subresource: sub,
        namespaced: true,
    }
}

fn rule(ops: &[&str], resources: &[&str]) -> Value {
    json!({"operations": ops, "apiGroups": [""], "apiVersions": ["v1"], "resources": resources})
}

#[test]
fn rules_match_operations_groups_versions_and_resources() {
    let r = rule(&["CREATE"], &["pods"]);
    assert!(matching::rule_matches(
        &r,
        &attrs(Operation::Create, "pods", "")
    ));
    assert!(!matching::rule_matches(
        &r,
        &attrs(Operation::Update, "pods", "")
    ));
    assert!(!matching::rule_matches(
        &r,
        &attrs(Operation::Create, "configmaps", "")
    ));
    let mut other_group = attrs(Operation::Create, "pods", "");
    other_group.group = "apps";
    assert!(!matching::rule_matches(&r, &other_group));
    let mut other_version = attrs(Operation::Create, "pods", "");
    other_version.version = "v2";
    assert!(!matching::rule_matches(&r, &other_version));
    let any =
        json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]});
    assert!(matching::rule_matches(&any, &other_group));
    assert!(matching::rule_matches(
        &any,
        &attrs(Operation::Delete, "secrets", "")
    ));
}

#[test]
fn resources_name_subresources_explicitly() {
    let main = rule(&["*"], &["pods"]);
    assert!(!matching::rule_matches(
        &main,
        &attrs(Operation::Update, "pods", "status")
    ));
    let star = rule(&["*"], &["*"]);
    assert!(!matching::rule_matches(
        &star,
        &attrs(Operation::Connect, "pods", "exec")
    ));
    let attach = rule(&["CONNECT"], &["pods/attach"]);
    assert!(matching::rule_matches(
        &attach,
        &attrs(Operation::Connect, "pods", "attach")
    ));
    assert!(!matching::rule_matches(
        &attach,
        &attrs(Operation::Connect, "pods", "exec")
    ));
    let all = rule(&["*"], &["*/*"]);
    assert!(matching::rule_matches(
        &all,
        &attrs(Operation::Connect, "pods", "exec")
    ));
    assert!(matching::rule_matches(
        &all,
        &attrs(Operation::Create, "pods", "")
    ));
    let pods_any = rule(&["*"], &["pods/*"]);
    assert!(matching::rule_matches(
        &pods_any,
        &attrs(Operation::Update, "pods", "status")
    ));
    assert!(matching::rule_matches(
        &pods_any,
        &attrs(Operation::Update, "pods", "")
    ));
    let statuses = rule(&["*"], &["*/status"]);
    assert!(matching::rule_matches(
        &statuses,
        &attrs(Operation::Update, "services", "status")
    ));
    assert!(!matching::rule_matches(
        &statuses,
        &attrs(Operation::Update, "services", "")
    ));
}

#[test]
fn scope_restricts_to_cluster_or_namespaced_resources() {
    let mut r = rule(&["*"], &["*"]);
    r["scope"] = "Cluster".into();
    assert!(!matching::rule_matches(
        &r,
        &attrs(Operation::Create, "pods", "")
    ));
    let mut cluster = attrs(Operation::Create, "nodes", "");
    cluster.namespaced = false;
    assert!(matching::rule_matches(&r, &cluster));
    r["scope"] = "Namespaced".into();
    assert!(!matching::rule_matches(&r, &cluster));
    assert!(matching::rule_matches(
        &r,
        &attrs(Operation::Create, "pods", "")
    ));
}

#[test]
fn candidates_keep_configuration_then_webhook_order() {
    let config = |name: &str, hooks: &[(&str, &str)]| {
        Arc::new(json!({
            "metadata": {"name": name},
            "webhooks": hooks.iter().map(|(h, res)| json!({
                "name": h, "rules": [rule(&["CREATE"], &[res])],
            })).collect::<Vec<_>>(),
        }))
    };
    let configs = vec![
        config(
            "a",
            &[("a2.example.com", "pods"), ("a1.example.com", "pods")],
        ),
        config(
            "b",
            &[("b1.example.com", "configmaps"), ("b2.example.com", "pods")],
        ),
    ];
    let hooks = matching::candidates(&configs, &attrs(Operation::Create, "pods", ""));
    let names: Vec<&str> = hooks.iter().map(|h| h.name()).collect();
    assert_eq!(
        names,
        ["a2.example.com", "a1.example.com", "b2.example.com"]
    );
    assert_eq!(hooks[2].config, "b");
}

#[test]
fn object_selector_matches_new_or_old_labels() {
    let spec = json!({"objectSelector": {"matchLabels": {"hook": "on"}}});
    let on = json!({"metadata": {"labels": {"hook": "on"}}});
    let off = json!({"metadata": {"labels": {"hook": "off"}}});
    assert!(matching::object_selected(&spec, Some(&on), None).unwrap());
    assert!(!matching::object_selected(&spec, Some(&off), None).unwrap());
    assert!(matching::object_selected(&spec, Some(&off), Some(&on)).unwrap());
    assert!(matching::object_selected(&spec, None, Some(&on)).unwrap());
    assert!(matching::object_selected(&json!({}), Some(&off), None).unwrap());
    let bad = json!({"objectSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}});
    assert!(matching::object_selected(&bad, Some(&on), None).is_err());
}

#[test]
fn namespace_selector_matches_labels_and_lets_cluster_objects_through() {
    let spec = json!({"namespaceSelector": {"matchExpressions": [
        {"key": "skip-webhooks", "operator": "DoesNotExist"}]}});
    assert!(matching::needs_namespace(&spec));
    assert!(!matching::needs_namespace(
        &json!({"namespaceSelector": {}})
    ));
    assert!(!matching::needs_namespace(&json!({})));
    let plain = json!({"team": "a"});
    let skipped = json!({"skip-webhooks": "yes"});
    assert!(matching::namespace_selected(&spec, plain.as_object()).unwrap());
    assert!(!matching::namespace_selected(&spec, skipped.as_object()).unwrap());
    assert!(matching::namespace_selected(&spec, None).unwrap());
}

fn user() -> crate::User {
    crate::User {
        name: "alice".into(),
        groups: vec!["devs".into()],
    }
}

#[test]
fn review_request_carries_the_request() {
    let obj = json!({"metadata": {"name": "cm"}});
    let u = user();
    let req = review::Request {
        uid: "u-1".into(),
        operation: Operation::Update,
        kind: ("", "v1", "Pod"),
        resource: ("", "v1", "pods"),
        subresource: "status",
        name: "cm",
        namespace: "ns",
        user: Some(&u),
        object: Some(&obj),
        old_object: None,
        dry_run: true,
        options: Some(json!({"kind": "UpdateOptions"})),
    };
    let r = review::review(&req);
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["kind"], "AdmissionReview");
    let q = &r["request"];
    assert_eq!(q["uid"], "u-1");
    assert_eq!(q["operation"], "UPDATE");
    assert_eq!(
        q["kind"],
        json!({"group": "", "version": "v1", "kind": "Pod"})
    );
    assert_eq!(q["resource"]["resource"], "pods");
    assert_eq!(q["subResource"], "status");
    assert_eq!(q["requestSubResource"], "status");
    assert_eq!(q["namespace"], "ns");
    assert_eq!(q["userInfo"]["username"], "alice");
    assert_eq!(q["object"], obj);
    assert_eq!(q["oldObject"], Value::Null);
    assert_eq!(q["dryRun"], true);
}

fn answer(resp: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp,
    }))
    .unwrap()
}

#[test]
fn a_denial_carries_the_webhooks_message_and_code() {
    let body = answer(json!({"uid": "u", "allowed": false,
        "status": {"code": 403, "reason": "Forbidden", "message": "no secrets here"}}));
    let Verdict::Denied(e) = review::verdict("deny.example.com", "u", &body).unwrap() else {
        panic!("allowed");
    };
    assert_eq!(e.code(), 403);
    assert_eq!(
        e.status().message,
        "admission webhook \"deny.example.com\" denied the request: no secrets here"
    );
    let body = answer(json!({"uid": "u", "allowed": false}));
    let Verdict::Denied(e) = review::verdict("d", "u", &body).unwrap() else {
        panic!("allowed");
    };
    assert_eq!(e.code(), 400);
    assert_eq!(
        e.status().message,
        "admission webhook \"d\" denied the request without explanation"
    );
    // A code below 400 is not a denial's code.
    let body =
        answer(json!({"uid": "u", "allowed": false, "status": {"code": 200, "reason": "Nope"}}));
    let Verdict::Denied(e) = review::verdict("d", "u", &body).unwrap() else {
        panic!("allowed");
    };
    assert_eq!(e.code(), 400);
    assert_eq!(
        e.status().message,
        "admission webhook \"d\" denied the request: Nope"
    );
}

#[test]
fn a_response_must_answer_this_request() {
    let body = answer(json!({"uid": "other", "allowed": true}));
    let err = review::verdict("d", "u", &body).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected response.uid=\"u\", got \"other\""
    );
    let wrong = serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview", "response": {"uid": "u", "allowed": true}}))
    .unwrap();
    assert!(matches!(
        review::verdict("d", "u", &wrong),
        Err(review::Error::WrongKind(_))
    ));
    assert!(matches!(
        review::verdict("d", "u", b"not json"),
        Err(review::Error::Decode(_))
    ));
}

#[test]
fn a_mutating_response_patches_the_object() {
    let patch = json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]);
    let encoded = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    let body = answer(
        json!({"uid": "u", "allowed": true, "patchType": "JSONPatch",
        "patch": encoded, "warnings": ["careful"]}),
    );
    let Verdict::Allowed {
        patch: Some(p),
        warnings,
    } = review::verdict("m", "u", &body).unwrap()
    else {
        panic!("no patch");
    };
    assert_eq!(warnings, ["careful"]);
    let obj = json!({"metadata": {"name": "x"}});
    let patched = review::apply_patch(&obj, &p).unwrap();
    assert_eq!(patched["metadata"]["labels"]["mutated"], "yes");
    let bad_type =
        answer(json!({"uid": "u", "allowed": true, "patchType": "Merge", "patch": encoded}));
    assert!(matches!(
        review::verdict("m", "u", &bad_type),
        Err(review::Error::PatchType(_))
    ));
    let bad_patch = json!([{"op": "replace", "path": "/spec/missing", "value": 1}]);
    assert!(review::apply_patch(&obj, &bad_patch).is_err());
}

#[test]
fn connect_options_come_from_the_query() {
    let o = super::connect_options(
        "exec",
        Some("command=sh&command=-c&stdin=true&container=app"),
    );
    assert_eq!(o["kind"], "PodExecOptions");
    assert_eq!(o["command"], json!(["sh", "-c"]));
    assert_eq!(o["stdin"], true);
    assert_eq!(o["container"], "app");
    let a = super::connect_options("attach", Some("tty=1"));
    assert_eq!(a["kind"], "PodAttachOptions");
    assert_eq!(a["tty"], true);
    assert!(a.get("command").is_none());
}

#[test]
fn timeouts_default_to_ten_and_stop_at_thirty_seconds() {
    use std::time::Duration;
    assert_eq!(super::call::timeout(&json!({})), Duration::from_secs(10));
    assert_eq!(
        super::call::timeout(&json!({"timeoutSeconds": 3})),
        Duration::from_secs(3)
    );
    assert_eq!(
        super::call::timeout(&json!({"timeoutSeconds": 99})),
        Duration::from_secs(30)
    );
}

#[test]
fn dry_run_needs_side_effect_free_webhooks_and_ignore_fails_open() {
    assert!(super::dry_run_safe(&json!({"sideEffects": "None"})));
    assert!(super::dry_run_safe(&json!({"sideEffects": "NoneOnDryRun"})));
    assert!(!super::dry_run_safe(&json!({"sideEffects": "Unknown"})));
    assert!(!super::dry_run_safe(&json!({})));
    assert!(super::fails_closed(&json!({})));
    assert!(!super::fails_closed(&json!({"failurePolicy": "Ignore"})));
}

/// What the plugin adds to a write while no webhook is configured: the
/// wrapped strategy's `before_create` against the bare one's, and both
/// against a whole create into SQLite, in the same run. Run with
/// `cargo test --release -p rkube-apiserver --lib -- --ignored
/// idle_webhooks_cost --nocapture`.
#[tokio::test(flavor = "current_thread")]
#[ignore]
async fn idle_webhooks_cost() {
    use std::time::Instant;

    use rkube_registry::{resources::strategy_for, ResourceStore, SystemClock};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn rkube_storage::Store> =
        Arc::new(rkube_storage::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap());
    let clock: Arc<dyn rkube_registry::Clock> = Arc::new(SystemClock);
    let admission = crate::admission::Admission::new(store.clone(), clock.clone());
    let info = rkube_api::catalog::lookup("", "v1", "configmaps").unwrap();
    let bare = strategy_for(info);
    let wrapped = super::strategy::wrap(info, bare.clone(), &admission.webhooks);
    let ctx = super::RequestContext::default();
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "x", "namespace": "default"}, "data": {"a": "b"}});
    super::scope(ctx, async {
        const CHECKS: u32 = 200_000;
        let mut o = obj.clone();
        wrapped.before_create(&mut o, false).await.unwrap();
        let timed = |s: Arc<dyn rkube_registry::Strategy>| {
            let mut o = obj.clone();
            async move {
                let start = Instant::now();
                for _ in 0..CHECKS {
                    s.before_create(&mut o, false).await.unwrap();
                }
                start.elapsed() / CHECKS
            }
        };
        let bare_check = timed(bare.clone()).await;
        let wrapped_check = timed(wrapped.clone()).await;

        // Interleaved rounds, so the table's growth and the machine's
        // load fall on both alike.
        const ROUNDS: u32 = 20;
        const PER_ROUND: u32 = 100;
        let bare_rs = ResourceStore::new(info, bare.clone(), store.clone(), clock.clone());
        let wrapped_rs = ResourceStore::new(info, wrapped.clone(), store.clone(), clock.clone());
        let mut took = [std::time::Duration::ZERO; 2];
        for round in 0..ROUNDS {
            for (which, rs) in [&bare_rs, &wrapped_rs].into_iter().enumerate() {
                let start = Instant::now();
                for i in 0..PER_ROUND {
                    let mut o = obj.clone();
                    o["metadata"]["name"] = format!("c{which}-{round}-{i}").into();
                    rs.create(Some("default"), o, false).await.unwrap();
                }
                took[which] += start.elapsed();
            }
        }
        let (bare_create, wrapped_create) = (
            took[0] / (ROUNDS * PER_ROUND),
            took[1] / (ROUNDS * PER_ROUND),
        );
        println!(
            "before_create: bare {bare_check:?}, with idle webhooks {wrapped_check:?} \
             (+{:?} per write)",
            wrapped_check.saturating_sub(bare_check)
        );
        println!(
            "create into SQLite: bare {bare_create:?}, with idle webhooks {wrapped_create:?} \
             (ratio {:.3}); the check is {:.4}% of a bare create",
            wrapped_create.as_secs_f64() / bare_create.as_secs_f64(),
            100.0 * wrapped_check.saturating_sub(bare_check).as_secs_f64()
                / bare_create.as_secs_f64()
        );
    })
    .await;
}
