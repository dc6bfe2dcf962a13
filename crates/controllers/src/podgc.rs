//! Placeholder: this controller is being written (issue 5). It does
//! nothing yet; the controller manager lists it so that `--controllers`
//! accepts its name.

use std::sync::Arc;

use crate::informers::Informers;

/// Runs until the process stops; does nothing yet.
pub async fn run(_client: kube::Client, _informers: Arc<Informers>) {
    futures::future::pending::<()>().await
}
