//! rkube's scheduler: assigns pods to nodes, as an ordinary API client.
//!
//! Upstream counterpart: `cmd/kube-scheduler`. Only the holder of the
//! `kube-system/kube-scheduler` Lease schedules when leader election is on.
//! (Being written for issue 5: it does not schedule anything yet.)

/// What the user asked of the scheduler.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--leader-elect`: act only while holding the Lease.
    pub leader_elect: bool,
    /// This instance's identity in the Lease (upstream: hostname_uuid).
    pub identity: String,
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("leader election: {0}")]
    LeaderElection(#[from] rkube_controllers::leader_election::Error),
}

/// Run the scheduler. Returns only on failure (e.g. a lost Lease).
pub async fn run(_client: kube::Client, _opts: Options) -> Result<(), Error> {
    futures::future::pending().await
}
