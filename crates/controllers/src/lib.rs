//! rkube's controller manager: the controllers that keep the cluster's
//! objects consistent, run as an ordinary API client.
//!
//! Upstream counterpart: `cmd/kube-controller-manager`. Like upstream, the
//! manager talks to the API server only through the API (kube-rs here,
//! client-go there), may be split from it later, and when several servers
//! run it only the holder of the `kube-system/kube-controller-manager`
//! Lease acts. Controllers are switched with upstream's `--controllers`
//! syntax: `*` for the defaults, `name` to enable, `-name` to disable.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod gc;
pub mod informers;
pub mod job;
pub mod leader_election;
pub mod localpath;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod persistentvolume;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod rootca;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod ttlafterfinished;

use std::future::Future;
use std::sync::Arc;

use informers::Informers;
use std::pin::Pin;

use futures::future::select_all;

/// How a controller is started: its client and the manager's options in,
/// a future that runs until the controller stops.
type Start = fn(kube::Client, &Options, &Arc<Informers>) -> Task;

/// The controllers this crate has: upstream name, the older short name
/// upstream still accepts, and how to start it.
pub const CONTROLLERS: &[(&str, &str, Start)] = &[
    ("namespace-controller", "namespace", |c, _, _| {
        Box::pin(namespace::run(c))
    }),
    (
        "garbage-collector-controller",
        "garbagecollector",
        |c, _, _| Box::pin(gc::run(c)),
    ),
    ("serviceaccount-controller", "serviceaccount", |c, _, _| {
        Box::pin(serviceaccount::run(c))
    }),
    (
        "root-ca-certificate-publisher-controller",
        "root-ca-cert-publisher",
        |c, o, _| Box::pin(rootca::run(c, o.root_ca_pem.clone())),
    ),
    ("replicaset-controller", "replicaset", |c, _, i| {
        Box::pin(replicaset::run_replicasets(c, i.clone()))
    }),
    (
        "replicationcontroller-controller",
        "replicationcontroller",
        |c, _, i| Box::pin(replicaset::run_replication_controllers(c, i.clone())),
    ),
    ("deployment-controller", "deployment", |c, _, i| {
        Box::pin(deployment::run(c, i.clone()))
    }),
    ("daemonset-controller", "daemonset", |c, _, i| {
        Box::pin(daemonset::run(c, i.clone()))
    }),
    ("statefulset-controller", "statefulset", |c, _, i| {
        Box::pin(statefulset::run(c, i.clone()))
    }),
    ("job-controller", "job", |c, _, i| {
        Box::pin(job::run(c, i.clone()))
    }),
    ("cronjob-controller", "cronjob", |c, _, i| {
        Box::pin(cronjob::run(c, i.clone()))
    }),
    ("endpoints-controller", "endpoint", |c, _, i| {
        Box::pin(endpoints::run(c, i.clone()))
    }),
    ("endpointslice-controller", "endpointslice", |c, _, i| {
        Box::pin(endpointslice::run(c, i.clone()))
    }),
    ("node-ipam-controller", "nodeipam", |c, o, i| {
        Box::pin(nodeipam::run(c, o.cluster_cidr.clone(), i.clone()))
    }),
    ("node-lifecycle-controller", "nodelifecycle", |c, _, i| {
        Box::pin(nodelifecycle::run(c, i.clone()))
    }),
    ("disruption-controller", "disruption", |c, _, i| {
        Box::pin(disruption::run(c, i.clone()))
    }),
    ("resourcequota-controller", "resourcequota", |c, _, i| {
        Box::pin(resourcequota::run(c, i.clone()))
    }),
    (
        "ttl-after-finished-controller",
        "ttl-after-finished",
        |c, _, i| Box::pin(ttlafterfinished::run(c, i.clone())),
    ),
    ("pod-garbage-collector-controller", "podgc", |c, _, i| {
        Box::pin(podgc::run(c, i.clone()))
    }),
    ("service-lb-controller", "servicelb", |c, _, i| {
        Box::pin(servicelb::run(c, i.clone()))
    }),
    (
        "persistentvolume-binder-controller",
        "persistentvolume-binder",
        |c, _, i| Box::pin(persistentvolume::run(c, i.clone())),
    ),
    (
        "persistentvolumeclaim-protection-controller",
        "pvc-protection",
        |c, _, i| Box::pin(persistentvolume::pvc_protection::run(c, i.clone())),
    ),
    (
        "persistentvolume-protection-controller",
        "pv-protection",
        |c, _, i| Box::pin(persistentvolume::pv_protection::run(c, i.clone())),
    ),
    // Not upstream's: k3s's local-path-provisioner, built in.
    (
        "local-path-provisioner-controller",
        "local-path-provisioner",
        |c, _, i| Box::pin(localpath::run(c, i.clone())),
    ),
];

/// Errors of the controller manager.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown controller {0:?} in --controllers")]
    UnknownController(String),
    #[error("leader election: {0}")]
    LeaderElection(#[from] leader_election::Error),
    #[error("controller {0} stopped")]
    Stopped(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the user asked of the controller manager.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--controllers`: `*` (all defaults), `name`, `-name`.
    pub controllers: Vec<String>,
    /// `--leader-elect`: act only while holding the Lease.
    pub leader_elect: bool,
    /// This instance's identity in the Lease (upstream: hostname_uuid).
    pub identity: String,
    /// PEM of the cluster CA, published as `kube-root-ca.crt`.
    pub root_ca_pem: String,
    /// `--cluster-cidr`: the range nodes' podCIDRs are cut from.
    pub cluster_cidr: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            controllers: vec!["*".into()],
            leader_elect: true,
            identity: "rkube".into(),
            root_ca_pem: String::new(),
            cluster_cidr: "10.42.0.0/16".into(),
        }
    }
}

/// Whether controller `name` (upstream name) is on under `flags`. A later
/// or more specific flag wins over `*`, as upstream's `IsControllerEnabled`.
pub fn enabled(name: &str, flags: &[String]) -> Result<bool> {
    let alias = CONTROLLERS
        .iter()
        .find(|(long, _, _)| *long == name)
        .map(|(_, short, _)| *short)
        .unwrap_or(name);
    let mut star = false;
    let mut explicit = None;
    for flag in flags {
        let (on, which) = match flag.strip_prefix('-') {
            Some(rest) => (false, rest),
            None => (true, flag.as_str()),
        };
        if which == "*" {
            star = on;
            continue;
        }
        if !CONTROLLERS
            .iter()
            .any(|(long, short, _)| *long == which || *short == which)
        {
            return Err(Error::UnknownController(flag.clone()));
        }
        if which == name || which == alias {
            explicit = Some(on);
        }
    }
    Ok(explicit.unwrap_or(star))
}

/// The controller manager: the switched-on controllers over one client.
pub struct ControllerManager {
    client: kube::Client,
    opts: Options,
}

/// A running controller; it ends only when the controller stops.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A running controller that yields its name when it stops.
type Named = Pin<Box<dyn Future<Output = &'static str> + Send>>;

impl ControllerManager {
    pub fn new(client: kube::Client, opts: Options) -> Result<ControllerManager> {
        for (name, _, _) in CONTROLLERS {
            enabled(name, &opts.controllers)?;
        }
        Ok(ControllerManager { client, opts })
    }

    fn tasks(&self) -> Result<Vec<Named>> {
        let mut tasks = Vec::new();
        let informers = Informers::new(self.client.clone());
        for (name, _, start) in CONTROLLERS {
            if !enabled(name, &self.opts.controllers)? {
                continue;
            }
            let task = start(self.client.clone(), &self.opts, &informers);
            let name: &'static str = name;
            tasks.push(Box::pin(async move {
                task.await;
                name
            })
                as Pin<Box<dyn Future<Output = &'static str> + Send>>);
        }
        Ok(tasks)
    }

    /// Run the controllers (after winning the Lease when leader election
    /// is on). Returns only on failure: a controller's watch ended or the
    /// Lease was lost — upstream exits then, and so should the caller.
    pub async fn run(self) -> Result<()> {
        let tasks = self.tasks()?;
        let all = async move {
            if tasks.is_empty() {
                return futures::future::pending().await;
            }
            let (stopped, _, _) = select_all(tasks).await;
            Error::Stopped(stopped)
        };
        if !self.opts.leader_elect {
            return Err(all.await);
        }
        let cfg = leader_election::LeaseConfig::new("kube-controller-manager", &self.opts.identity);
        let store = leader_election::KubeLeaseStore::new(self.client.clone(), &cfg);
        Err(leader_election::run_leading(&store, &cfg, all).await?)
    }
}

/// Run the controller manager: see [`ControllerManager::run`].
pub async fn run(client: kube::Client, opts: Options) -> Result<()> {
    ControllerManager::new(client, opts)?.run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: &[&str]) -> Vec<String> {
        f.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn star_enables_everything_and_minus_disables_one() {
        let f = flags(&["*", "-garbagecollector"]);
        assert!(enabled("namespace-controller", &f).unwrap());
        assert!(!enabled("garbage-collector-controller", &f).unwrap());
    }

    #[test]
    fn without_star_only_named_controllers_run() {
        let f = flags(&["serviceaccount-controller"]);
        assert!(enabled("serviceaccount-controller", &f).unwrap());
        assert!(!enabled("namespace-controller", &f).unwrap());
    }

    #[test]
    fn unknown_names_are_refused() {
        let err = enabled("namespace-controller", &flags(&["*", "-nope"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown controller \"-nope\" in --controllers"
        );
    }
}
