//! The controllers against a real `rkube server`: namespace deletion,
//! garbage collection with each propagation policy, the default service
//! account, the root CA ConfigMap and the leader Lease.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use rkube_controllers::leader_election::{
    try_acquire_or_renew, KubeLeaseStore, LeaseConfig, LeaseStore,
};
use rkube_controllers::Options;
use support::{eventually, Server};

const WAIT: Duration = Duration::from_secs(30);
const CA: &str = "-----BEGIN CERTIFICATE-----\nTEST\n-----END CERTIFICATE-----\n";

/// A server with the controller manager running in this process.
async fn cluster(controllers: &[&str], leader_elect: bool) -> (Server, kube::Client) {
    let server = Server::start().await;
    let client = server.client().await;
    let opts = Options {
        controllers: controllers.iter().map(|s| s.to_string()).collect(),
        leader_elect,
        identity: "test-manager".into(),
        root_ca_pem: CA.into(),
        cluster_cidr: "10.42.0.0/16".into(),
    };
    let c = client.clone();
    tokio::spawn(async move {
        let err = rkube_controllers::run(c, opts).await;
        eprintln!("controller manager stopped: {err:?}");
    });
    (server, client)
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

fn configmap(name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..ConfigMap::default()
    }
}

fn owned_by(owner: &ConfigMap, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.name_any(),
        uid: owner.uid().expect("created object has a uid"),
        block_owner_deletion: Some(block),
        controller: None,
    }
}

#[tokio::test]
async fn deleted_namespace_is_emptied_and_removed() {
    let (server, client) = cluster(&["namespace-controller"], false).await;
    create_namespace(&client, "doomed").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "doomed");
    for i in 0..3 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("cm{i}"), vec![]),
        )
        .await
        .unwrap();
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("s".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    // An unscheduled pod: no kubelet has to confirm its deletion.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "doomed")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "namespace doomed to disappear", || async {
        namespaces
            .get_opt("doomed")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // Its content went first; an unrelated namespace is untouched.
    assert!(cms
        .get_opt("cm0")
        .await
        .map(|o| o.is_none())
        .unwrap_or(true));
    assert!(namespaces.get_opt("default").await.unwrap().is_some());
    drop(server);
}

#[tokio::test]
async fn namespace_with_held_content_reports_it_until_released() {
    let (_server, client) = cluster(&["namespace-controller"], false).await;
    create_namespace(&client, "held").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    let mut cm = configmap("kept", vec![]);
    cm.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let message = eventually(WAIT, "finalizers-remaining condition", || async {
        let ns = namespaces.get("held").await.unwrap();
        ns.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")?
            .message
    })
    .await;
    assert_eq!(
        message,
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    // Release the object: the namespace then goes.
    let mut held = cms.get("kept").await.unwrap();
    held.metadata.finalizers = None;
    cms.replace("kept", &PostParams::default(), &held)
        .await
        .unwrap();
    eventually(WAIT, "namespace held to disappear", || async {
        namespaces
            .get_opt("held")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn new_namespaces_get_default_account_and_root_ca() {
    let (_server, client) = cluster(
        &[
            "serviceaccount-controller",
            "root-ca-certificate-publisher-controller",
        ],
        false,
    )
    .await;
    create_namespace(&client, "team").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    eventually(WAIT, "default service account", || async {
        sas.get_opt("default").await.unwrap()
    })
    .await;
    let ca_data = |cm: ConfigMap| cm.data.and_then(|d| d.get("ca.crt").cloned());
    let got = eventually(WAIT, "kube-root-ca.crt", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .unwrap()
            .and_then(ca_data)
    })
    .await;
    assert_eq!(got, CA);

    // Deleted: both come back (with new uids).
    let old_uid = sas.get("default").await.unwrap().uid();
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "default account recreated", || async {
        let sa = sas.get_opt("default").await.unwrap()?;
        (sa.uid() != old_uid).then_some(())
    })
    .await;
    eventually(WAIT, "root CA recreated", || async {
        cms.get_opt("kube-root-ca.crt").await.unwrap().map(|_| ())
    })
    .await;

    // Tampered: restored.
    let mut cm = cms.get("kube-root-ca.crt").await.unwrap();
    cm.data = Some(BTreeMap::from([("ca.crt".into(), "evil".into())]));
    cms.replace("kube-root-ca.crt", &PostParams::default(), &cm)
        .await
        .unwrap();
    eventually(WAIT, "root CA restored", || async {
        let cm = cms.get("kube-root-ca.crt").await.unwrap();
        (ca_data(cm).as_deref() == Some(CA)).then_some(())
    })
    .await;
}

/// Owner and dependent ConfigMaps in `default`.
async fn owner_and_dependent(cms: &Api<ConfigMap>, tag: &str, block: bool) -> ConfigMap {
    let owner = cms
        .create(
            &PostParams::default(),
            &configmap(&format!("{tag}-owner"), vec![]),
        )
        .await
        .unwrap();
    cms.create(
        &PostParams::default(),
        &configmap(&format!("{tag}-dependent"), vec![owned_by(&owner, block)]),
    )
    .await
    .unwrap();
    owner
}

#[tokio::test]
async fn garbage_collector_honours_each_propagation_policy() {
    let (_server, client) = cluster(&["garbage-collector-controller"], false).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    // Background: the owner goes at once, the dependent after it.
    owner_and_dependent(&cms, "bg", false).await;
    cms.delete("bg-owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(WAIT, "background dependent collected", || async {
        cms.get_opt("bg-dependent")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Orphan: the dependent stays without its ownerReference.
    owner_and_dependent(&cms, "or", true).await;
    cms.delete("or-owner", &DeleteParams::orphan())
        .await
        .unwrap();
    eventually(WAIT, "orphaning owner gone", || async {
        cms.get_opt("or-owner")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let orphan = cms.get("or-dependent").await.unwrap();
    assert!(orphan.owner_references().is_empty(), "{orphan:?}");

    // Foreground: the owner is kept until the blocking dependent is gone.
    let owner = owner_and_dependent(&cms, "fg", true).await;
    let mut hold = cms.get("fg-dependent").await.unwrap();
    hold.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.replace("fg-dependent", &PostParams::default(), &hold)
        .await
        .unwrap();
    cms.delete("fg-owner", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(WAIT, "dependent marked for deletion", || async {
        let d = cms.get("fg-dependent").await.unwrap();
        d.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let still = cms.get_opt("fg-owner").await.unwrap();
    assert_eq!(
        still.map(|o| o.uid()),
        Some(owner.uid()),
        "owner must wait for its blocking dependent"
    );
    let mut release = cms.get("fg-dependent").await.unwrap();
    release.metadata.finalizers = None;
    cms.replace("fg-dependent", &PostParams::default(), &release)
        .await
        .unwrap();
    eventually(WAIT, "foreground owner gone", || async {
        cms.get_opt("fg-owner")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(cms.get_opt("fg-dependent").await.unwrap().is_none());
}

#[tokio::test]
async fn leader_holds_the_controller_manager_lease() {
    let (_server, client) = cluster(&["serviceaccount-controller"], true).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let spec = eventually(WAIT, "lease held", || async {
        leases
            .get_opt("kube-controller-manager")
            .await
            .unwrap()?
            .spec
    })
    .await;
    assert_eq!(spec.holder_identity.as_deref(), Some("test-manager"));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    let first = spec.renew_time.clone().unwrap();
    // The holder renews (every 2 s).
    eventually(WAIT, "lease renewed", || async {
        let spec = leases.get("kube-controller-manager").await.unwrap().spec?;
        (spec.renew_time? > first).then_some(())
    })
    .await;
    // A second candidate neither takes the held lease nor clobbers it.
    let other = LeaseConfig::new("kube-controller-manager", "other-manager");
    let store = KubeLeaseStore::new(client.clone(), &other);
    assert!(!try_acquire_or_renew(&store, &other).await.unwrap());
    let mut stale = leases.get("kube-controller-manager").await.unwrap();
    eventually(WAIT, "another renewal", || async {
        let now = leases.get("kube-controller-manager").await.unwrap();
        (now.metadata.resource_version != stale.metadata.resource_version).then_some(())
    })
    .await;
    stale.spec.as_mut().unwrap().holder_identity = Some("other-manager".into());
    assert!(
        !store.replace(&stale).await.unwrap(),
        "stale write must conflict"
    );
    let holder = leases
        .get("kube-controller-manager")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(holder.holder_identity.as_deref(), Some("test-manager"));

    // And the controllers run while leading.
    create_namespace(&client, "led").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "led");
    eventually(WAIT, "default account under a leader", || async {
        sas.get_opt("default").await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn garbage_collector_breaks_cycles_and_respects_other_owners() {
    let (_server, client) = cluster(&["garbage-collector-controller"], false).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // a → b → c → a, every reference blocking; a deleted in the foreground.
    let a = cms
        .create(&pp, &configmap("cycle-a", vec![]))
        .await
        .unwrap();
    let b = cms
        .create(&pp, &configmap("cycle-b", vec![owned_by(&a, true)]))
        .await
        .unwrap();
    let c = cms
        .create(&pp, &configmap("cycle-c", vec![owned_by(&b, true)]))
        .await
        .unwrap();
    let mut a = cms.get("cycle-a").await.unwrap();
    a.metadata.owner_references = Some(vec![owned_by(&c, true)]);
    cms.replace("cycle-a", &pp, &a).await.unwrap();
    cms.delete("cycle-a", &DeleteParams::foreground())
        .await
        .unwrap();
    for name in ["cycle-a", "cycle-b", "cycle-c"] {
        eventually(WAIT, name, || async {
            cms.get_opt(name).await.unwrap().is_none().then_some(())
        })
        .await;
    }

    // A dependent of two owners survives one of them (losing its
    // reference) and goes with the second.
    let first = cms
        .create(&pp, &configmap("owner-1", vec![]))
        .await
        .unwrap();
    let second = cms
        .create(&pp, &configmap("owner-2", vec![]))
        .await
        .unwrap();
    cms.create(
        &pp,
        &configmap(
            "shared",
            vec![owned_by(&first, true), owned_by(&second, false)],
        ),
    )
    .await
    .unwrap();
    cms.delete("owner-1", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(WAIT, "first owner gone", || async {
        cms.get_opt("owner-1")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let shared = cms.get("shared").await.unwrap();
    let owners: Vec<String> = shared
        .owner_references()
        .iter()
        .map(|o| o.name.clone())
        .collect();
    assert_eq!(owners, ["owner-2"]);
    cms.delete("owner-2", &DeleteParams::default())
        .await
        .unwrap();
    eventually(WAIT, "shared dependent collected", || async {
        cms.get_opt("shared").await.unwrap().is_none().then_some(())
    })
    .await;
}
