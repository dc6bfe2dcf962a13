use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::discovery::ApiResource;

use super::*;

fn terminating() -> Snapshot {
    Snapshot {
        deleting: true,
        spec_finalizers: vec![FINALIZER.into()],
        now: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
        ..Snapshot::default()
    }
}

fn content(resource: &str, items: Vec<Item>) -> Content {
    Content {
        resource: resource.into(),
        items,
        error: None,
    }
}

fn live() -> Item {
    Item::default()
}

fn find<'a>(c: &'a [NamespaceCondition], t: &str) -> &'a NamespaceCondition {
    c.iter().find(|c| c.type_ == t).expect(t)
}

#[test]
fn active_namespace_needs_nothing() {
    let snap = Snapshot {
        spec_finalizers: vec![FINALIZER.into()],
        contents: vec![content("configmaps.", vec![live()])],
        ..Snapshot::default()
    };
    assert!(reconcile(&snap).is_empty());
}

#[test]
fn namespace_without_our_finalizer_is_left_alone() {
    let mut snap = terminating();
    snap.spec_finalizers.clear();
    snap.contents = vec![content("configmaps.", vec![live()])];
    assert!(reconcile(&snap).is_empty());
}

#[test]
fn empty_terminating_namespace_is_finalized() {
    let mut snap = terminating();
    snap.contents = vec![content("configmaps.", vec![]), content("secrets.", vec![])];
    let plan = reconcile(&snap);
    assert!(plan.finalize);
    assert!(!plan.requeue);
    assert!(plan.delete.is_empty());
    let c = plan.conditions.expect("conditions written");
    assert_eq!(find(&c, CONTENT_REMAINING).status, "False");
    assert_eq!(
        find(&c, CONTENT_REMAINING).reason.as_deref(),
        Some("ContentRemoved")
    );
    assert_eq!(
        find(&c, DISCOVERY_FAILURE).message.as_deref(),
        Some("All resources successfully discovered")
    );
}

#[test]
fn live_content_is_deleted_and_reported() {
    let mut snap = terminating();
    snap.contents = vec![
        content("secrets.", vec![live()]),
        content("configmaps.", vec![]),
        content("pods.", vec![live(), live()]),
    ];
    let plan = reconcile(&snap);
    assert_eq!(plan.delete, vec![0, 2]);
    assert!(plan.requeue && !plan.finalize);
    let c = plan.conditions.unwrap();
    let remaining = find(&c, CONTENT_REMAINING);
    assert_eq!(remaining.status, "True");
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: pods. has 2 resource instances, secrets. has 1 resource instances")
    );
}

#[test]
fn objects_already_going_are_waited_for_not_deleted_again() {
    let mut snap = terminating();
    let going = Item {
        deleting: true,
        finalizers: vec!["example.com/hold".into()],
    };
    snap.contents = vec![content("configmaps.", vec![going.clone(), going])];
    let plan = reconcile(&snap);
    assert!(plan.delete.is_empty());
    assert!(plan.requeue);
    let c = plan.conditions.unwrap();
    let f = find(&c, FINALIZERS_REMAINING);
    assert_eq!(f.status, "True");
    assert_eq!(f.reason.as_deref(), Some("SomeFinalizersRemain"));
    assert_eq!(
        f.message.as_deref(),
        Some("Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances")
    );
}

#[test]
fn discovery_and_content_failures_block_finalization() {
    let mut snap = terminating();
    snap.failed_groups = BTreeMap::from([("metrics.k8s.io".into(), "503".into())]);
    snap.contents = vec![Content {
        resource: "widgets.example.com".into(),
        items: vec![],
        error: Some("forbidden".into()),
    }];
    let plan = reconcile(&snap);
    assert!(!plan.finalize && plan.requeue);
    let c = plan.conditions.unwrap();
    let d = find(&c, DISCOVERY_FAILURE);
    assert_eq!(d.status, "True");
    assert_eq!(
        d.message.as_deref(),
        Some("Discovery failed for some groups, 1 failing: metrics.k8s.io: 503")
    );
    let f = find(&c, CONTENT_FAILURE);
    assert_eq!(f.reason.as_deref(), Some("ContentDeletionFailed"));
    assert_eq!(
        f.message.as_deref(),
        Some("Failed to delete all resource types, 1 remaining: widgets.example.com: forbidden")
    );
}

#[test]
fn unchanged_conditions_are_not_rewritten_and_keep_their_time() {
    let mut snap = terminating();
    snap.contents = vec![content("pods.", vec![live()])];
    let first = reconcile(&snap).conditions.unwrap();
    snap.conditions = first.clone();
    snap.now = Some(Time(Timestamp::from_second(1_700_000_100).unwrap()));
    assert_eq!(reconcile(&snap).conditions, None);
    // A status flip moves only that condition's transition time.
    snap.contents = vec![content("pods.", vec![])];
    let next = reconcile(&snap).conditions.unwrap();
    assert_eq!(
        find(&next, CONTENT_REMAINING).last_transition_time,
        snap.now
    );
    assert_eq!(
        find(&next, DISCOVERY_FAILURE).last_transition_time,
        find(&first, DISCOVERY_FAILURE).last_transition_time
    );
}

#[test]
fn other_conditions_are_kept() {
    let mut snap = terminating();
    snap.conditions = vec![NamespaceCondition {
        type_: "Custom".into(),
        status: "True".into(),
        ..NamespaceCondition::default()
    }];
    let c = reconcile(&snap).conditions.unwrap();
    assert_eq!(c.len(), 5);
    assert!(c.iter().any(|c| c.type_ == "Custom"));
}

/// A recording fake: objects per resource that `delete_all` removes unless
/// they carry a finalizer (then they only become deleting).
#[derive(Default)]
struct Fake {
    ns: Mutex<Option<Namespace>>,
    objects: Mutex<BTreeMap<String, Vec<Item>>>,
    calls: Mutex<Vec<String>>,
}

fn served(plural: &str, verbs: &[&str]) -> Served {
    Served {
        ar: ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: plural.into(),
            plural: plural.into(),
        },
        namespaced: true,
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
    }
}

#[async_trait]
impl NamespaceApi for Fake {
    async fn get(&self, _: &str) -> Result<Option<Namespace>, Error> {
        Ok(self.ns.lock().unwrap().clone())
    }
    async fn discover(&self) -> Result<Discovered, Error> {
        Ok(Discovered {
            resources: vec![
                served("configmaps", &["list", "delete", "deletecollection"]),
                served("secrets", &["list", "delete"]),
                // Not deletable: namespace deletion cannot and need not empty it.
                served("bindings", &["create"]),
            ],
            failed_groups: BTreeMap::new(),
        })
    }
    async fn list(&self, res: &Served, _: &str) -> Result<Vec<Item>, Error> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("list {}", res.ar.plural));
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(&res.ar.plural)
            .cloned()
            .unwrap_or_default())
    }
    async fn delete_all(&self, res: &Served, _: &str) -> Result<(), Error> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("delete {}", res.ar.plural));
        let mut objects = self.objects.lock().unwrap();
        if let Some(items) = objects.get_mut(&res.ar.plural) {
            items.retain(|i| !i.finalizers.is_empty());
            items.iter_mut().for_each(|i| i.deleting = true);
        }
        Ok(())
    }
    async fn set_conditions(&self, _: &str, c: Vec<NamespaceCondition>) -> Result<(), Error> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("conditions {}", c.len()));
        if let Some(ns) = self.ns.lock().unwrap().as_mut() {
            ns.status.get_or_insert_with(Default::default).conditions = Some(c);
        }
        Ok(())
    }
    async fn finalize(&self, ns: Namespace) -> Result<(), Error> {
        let left = ns.spec.and_then(|s| s.finalizers).unwrap_or_default();
        self.calls
            .lock()
            .unwrap()
            .push(format!("finalize {left:?}"));
        *self.ns.lock().unwrap() = None;
        Ok(())
    }
}

fn terminating_namespace() -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some("doomed".into()),
            deletion_timestamp: Some(Time(Timestamp::now())),
            ..ObjectMeta::default()
        },
        spec: Some(NamespaceSpec {
            finalizers: Some(vec![FINALIZER.into(), "example.com/other".into()]),
        }),
        status: None,
    }
}

#[tokio::test]
async fn sync_deletes_content_then_finalizes() {
    let fake = Fake::default();
    *fake.ns.lock().unwrap() = Some(terminating_namespace());
    fake.objects
        .lock()
        .unwrap()
        .insert("configmaps".into(), vec![live(), live()]);
    fake.objects
        .lock()
        .unwrap()
        .insert("secrets".into(), vec![live()]);
    assert_eq!(sync(&fake, "doomed").await.unwrap(), Outcome::Done);
    let calls = fake.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "list configmaps",
            "list secrets",
            "delete configmaps",
            "delete secrets",
            "list configmaps",
            "list secrets",
            "conditions 4",
            "finalize [\"example.com/other\"]",
        ]
    );
}

#[tokio::test]
async fn sync_requeues_while_content_has_finalizers() {
    let fake = Fake::default();
    *fake.ns.lock().unwrap() = Some(terminating_namespace());
    let held = Item {
        deleting: false,
        finalizers: vec!["example.com/hold".into()],
    };
    fake.objects
        .lock()
        .unwrap()
        .insert("configmaps".into(), vec![held]);
    assert_eq!(sync(&fake, "doomed").await.unwrap(), Outcome::Requeue);
    let calls = fake.calls.lock().unwrap().clone();
    assert!(
        !calls.iter().any(|c| c.starts_with("finalize")),
        "{calls:?}"
    );
    let ns = fake.ns.lock().unwrap().clone().unwrap();
    let conds = ns.status.unwrap().conditions.unwrap();
    assert_eq!(find(&conds, FINALIZERS_REMAINING).status, "True");
    // A second pass does not delete again nor rewrite unchanged conditions.
    fake.calls.lock().unwrap().clear();
    assert_eq!(sync(&fake, "doomed").await.unwrap(), Outcome::Requeue);
    assert_eq!(
        fake.calls.lock().unwrap().clone(),
        ["list configmaps", "list secrets"]
    );
}

#[tokio::test]
async fn sync_ignores_live_namespaces() {
    let fake = Fake::default();
    let mut ns = terminating_namespace();
    ns.metadata.deletion_timestamp = None;
    *fake.ns.lock().unwrap() = Some(ns);
    assert_eq!(sync(&fake, "doomed").await.unwrap(), Outcome::Done);
    assert!(fake.calls.lock().unwrap().is_empty());
}
