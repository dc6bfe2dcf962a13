use super::*;
use k8s_openapi::schemars::generate::SchemaSettings;
use std::collections::HashSet;

#[test]
fn every_group_has_a_version() {
    for group in groups() {
        assert!(!group.versions.is_empty(), "{}", group.name);
        for gv in group.versions {
            assert_eq!(gv.group, group.name);
            assert!(!gv.resources.is_empty(), "{}", gv.api_version());
            for r in gv.resources {
                assert_eq!((r.group, r.version), (gv.group, gv.version), "{}", r.kind);
            }
        }
    }
}

#[test]
fn groups_follow_kube_apiserver_discovery_order() {
    let names: Vec<_> = groups().iter().map(|g| g.name).collect();
    assert_eq!(
        names,
        [
            "",
            "apiregistration.k8s.io",
            "apps",
            "events.k8s.io",
            "authentication.k8s.io",
            "authorization.k8s.io",
            "autoscaling",
            "batch",
            "certificates.k8s.io",
            "networking.k8s.io",
            "policy",
            "rbac.authorization.k8s.io",
            "storage.k8s.io",
            "admissionregistration.k8s.io",
            "apiextensions.k8s.io",
            "scheduling.k8s.io",
            "coordination.k8s.io",
            "node.k8s.io",
            "discovery.k8s.io",
            "flowcontrol.apiserver.k8s.io",
        ]
    );
    assert_eq!(group("autoscaling").unwrap().preferred().version, "v2");
    let autoscaling: Vec<_> = group("autoscaling")
        .unwrap()
        .versions
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(autoscaling, ["v2", "v1"]);
    assert_eq!(group("").unwrap().preferred().api_version(), "v1");
    assert_eq!(group("apps").unwrap().preferred().api_version(), "apps/v1");
    assert!(group("resource.k8s.io").is_none());
}

#[test]
fn no_duplicate_plurals_kinds_or_short_names_within_a_group() {
    for group in groups() {
        let mut short = HashSet::new();
        for gv in group.versions {
            let mut plurals = HashSet::new();
            let mut kinds = HashSet::new();
            for r in gv.resources {
                assert!(plurals.insert(r.plural), "duplicate plural {}", r.plural);
                assert!(kinds.insert(r.kind), "duplicate kind {}", r.kind);
            }
        }
        // Short names may repeat across versions of one group (hpa) but not
        // between different resources of the group.
        for r in group.preferred().resources {
            for s in r.short_names {
                assert!(
                    short.insert(*s),
                    "duplicate short name {s} in {}",
                    group.name
                );
            }
        }
    }
}

#[test]
fn resources_and_subresources_are_listed_alphabetically_like_discovery() {
    for r in all() {
        let subs: Vec<_> = r.subresources.iter().map(|s| s.name).collect();
        let mut sorted = subs.clone();
        sorted.sort();
        assert_eq!(subs, sorted, "{}", r.plural);
    }
    for group in groups() {
        for gv in group.versions {
            let plurals: Vec<_> = gv.resources.iter().map(|r| r.plural).collect();
            let mut sorted = plurals.clone();
            sorted.sort();
            assert_eq!(plurals, sorted, "{}", gv.api_version());
        }
    }
}

#[test]
fn every_kind_round_trips_through_its_k8s_openapi_type() {
    for r in all() {
        let empty = r.empty_object();
        assert_eq!(empty["kind"], r.kind, "{}", r.plural);
        assert_eq!(
            empty["apiVersion"],
            r.api_version().as_str(),
            "{}",
            r.plural
        );
        r.decode_check(&empty)
            .unwrap_or_else(|e| panic!("{} does not decode its own empty object: {e}", r.kind));
        let mut wrong = empty.clone();
        wrong["metadata"] = serde_json::json!({"name": 5});
        assert!(
            r.decode_check(&wrong).is_err(),
            "{} accepted a numeric name",
            r.kind
        );
    }
}

#[test]
fn singular_and_type_names_match_the_schema() {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    for r in all() {
        assert_eq!(r.singular, r.kind.to_lowercase());
        let reference = r.schema(&mut generator);
        let reference = reference
            .get("$ref")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        assert_eq!(
            reference.rsplit('/').next(),
            Some(r.type_name),
            "{}",
            r.kind
        );
    }
}

#[test]
fn lookups() {
    let pods = lookup("", "v1", "pods").unwrap();
    assert_eq!(pods.kind, "Pod");
    assert!(pods.namespaced);
    assert_eq!(pods.verbs, CRUD);
    assert_eq!(pods.short_names, ["po"]);
    assert_eq!(pods.categories, ["all"]);
    let subs: Vec<_> = pods.subresources.iter().map(|s| s.name).collect();
    assert_eq!(
        subs,
        [
            "attach",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "exec",
            "log",
            "portforward",
            "proxy",
            "resize",
            "status"
        ]
    );
    let eviction = pods.subresource("eviction").unwrap();
    assert_eq!(eviction.response_kind(pods), ("policy", "v1", "Eviction"));
    assert_eq!(
        pods.subresource("status").unwrap().response_kind(pods),
        ("", "v1", "Pod")
    );
    assert!(pods.subresource("nope").is_none());

    let deploy = by_kind("apps", "v1", "Deployment").unwrap();
    assert_eq!(deploy.plural, "deployments");
    assert_eq!(
        deploy.subresource("scale").unwrap().response_kind(deploy),
        ("autoscaling", "v1", "Scale")
    );
    assert_eq!(lookup("", "v1", "bindings").unwrap().verbs, ["create"]);
    assert_eq!(
        lookup("", "v1", "componentstatuses").unwrap().verbs,
        ["get", "list"]
    );
    let ns = lookup("", "v1", "namespaces").unwrap();
    assert!(!ns.namespaced);
    assert!(!ns.has_verb("deletecollection"));
    assert!(ns.has_verb("watch"));
    let token = lookup("", "v1", "serviceaccounts")
        .unwrap()
        .subresource("token")
        .unwrap();
    assert_eq!(token.group, Some("authentication.k8s.io"));
    assert_eq!(
        lookup("authentication.k8s.io", "v1", "tokenreviews")
            .unwrap()
            .verbs,
        ["create"]
    );
    assert!(
        lookup("authorization.k8s.io", "v1", "localsubjectaccessreviews")
            .unwrap()
            .namespaced
    );
    assert_eq!(by_kind("", "v1", "Pod").unwrap().list_kind(), "PodList");

    assert!(lookup("", "v1", "nope").is_none());
    assert!(lookup("apps", "v2", "deployments").is_none());
    assert!(lookup("nope", "v1", "pods").is_none());
    assert!(by_kind("", "v1", "Deployment").is_none());
}

#[test]
fn short_names_resolve_in_discovery_order() {
    for (short, plural) in [
        ("po", "pods"),
        ("svc", "services"),
        ("deploy", "deployments"),
        ("rs", "replicasets"),
        ("ds", "daemonsets"),
        ("sts", "statefulsets"),
        ("cm", "configmaps"),
        ("ns", "namespaces"),
        ("no", "nodes"),
        ("pv", "persistentvolumes"),
        ("pvc", "persistentvolumeclaims"),
        ("sa", "serviceaccounts"),
        ("ep", "endpoints"),
        ("ing", "ingresses"),
        ("netpol", "networkpolicies"),
        ("pdb", "poddisruptionbudgets"),
        ("pc", "priorityclasses"),
        ("sc", "storageclasses"),
        ("csr", "certificatesigningrequests"),
        ("crd", "customresourcedefinitions"),
        ("crds", "customresourcedefinitions"),
        ("cj", "cronjobs"),
        ("rc", "replicationcontrollers"),
        ("limits", "limitranges"),
        ("quota", "resourcequotas"),
        ("cs", "componentstatuses"),
    ] {
        let found = by_short_name(short);
        assert_eq!(found.len(), 1, "{short}");
        assert_eq!(found[0].plural, plural, "{short}");
    }
    let events = by_short_name("ev");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].group, "");
    assert_eq!(events[1].group, "events.k8s.io");
    let hpa = by_short_name("hpa");
    assert_eq!(
        hpa.iter().map(|r| r.version).collect::<Vec<_>>(),
        ["v2", "v1"]
    );
    assert!(by_short_name("nope").is_empty());
}

#[test]
fn category_all_is_what_kubectl_get_all_lists() {
    let all: Vec<_> = in_category("all").iter().map(|r| r.plural).collect();
    assert_eq!(
        all,
        [
            "pods",
            "replicationcontrollers",
            "services",
            "daemonsets",
            "deployments",
            "replicasets",
            "statefulsets",
            "horizontalpodautoscalers",
            "cronjobs",
            "jobs",
        ]
    );
    let extensions: Vec<_> = in_category("api-extensions")
        .iter()
        .map(|r| r.plural)
        .collect();
    assert!(extensions.contains(&"customresourcedefinitions"));
    assert!(extensions.contains(&"apiservices"));
    assert!(extensions.contains(&"mutatingwebhookconfigurations"));
}

/// Hashes as a real kube-apiserver reports them in discovery.
#[test]
fn storage_version_hashes_match_kube_apiserver() {
    for (group, plural, hash) in [
        ("", "pods", "xPOwRZ+Yhw8="),
        ("", "configmaps", "qFsyl6wFWjQ="),
        ("", "events", "r2yiGXH7wu8="),
        ("events.k8s.io", "events", "r2yiGXH7wu8="),
        ("apps", "deployments", "8aSe+NMegvE="),
        ("batch", "cronjobs", "sd5LIXh4Fjs="),
        (
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "jfWCUB31mvA=",
        ),
        ("apiregistration.k8s.io", "apiservices", "InPBPD7+PqM="),
        ("rbac.authorization.k8s.io", "roles", "7FuwZcIIItM="),
    ] {
        let r = group_version(group, "v1")
            .and_then(|gv| gv.resources.iter().find(|r| r.plural == plural))
            .unwrap();
        assert_eq!(
            r.storage_version_hash().as_deref(),
            Some(hash),
            "{group} {plural}"
        );
    }
    let v1 = lookup("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
    let v2 = lookup("autoscaling", "v2", "horizontalpodautoscalers").unwrap();
    assert_eq!(v1.storage_version_hash().as_deref(), Some("qwQve8ut294="));
    assert_eq!(v1.storage_version_hash(), v2.storage_version_hash());
    for (group, plural) in [
        ("", "bindings"),
        ("", "componentstatuses"),
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ] {
        assert_eq!(
            lookup(group, "v1", plural).unwrap().storage_version_hash(),
            None
        );
    }
}
