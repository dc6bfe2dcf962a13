//! The sync loop's state: the fragments last applied, so each sync sends
//! only what changed; after a failed apply the next sync replaces the
//! whole table.
//!
//! Upstream counterpart: the nftables Proxier's syncProxyRules (partial
//! syncs, with a full sync after errors).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::ServicePort;
use crate::nft::{Error, Nft};
use crate::rules::{self, Config, Fragment};

/// Keeps the table in step with the Service ports it is given.
pub struct Proxier {
    cfg: Config,
    nft: Arc<dyn Nft>,
    /// What is in force; None before the first sync or after an error.
    applied: Option<BTreeMap<String, Fragment>>,
}

impl Proxier {
    pub fn new(cfg: Config, nft: Arc<dyn Nft>) -> Proxier {
        Proxier {
            cfg,
            nft,
            applied: None,
        }
    }

    /// Brings the rules to `ports`; returns the script applied (empty when
    /// nothing changed).
    pub fn sync(&mut self, ports: &[ServicePort]) -> Result<String, Error> {
        let new = rules::fragments(&self.cfg, ports);
        let script = match &self.applied {
            Some(old) => rules::diff(old, &new),
            None => rules::full(&self.cfg, &new),
        };
        if script.is_empty() {
            return Ok(script);
        }
        match self.nft.apply(&script) {
            Ok(()) => {
                self.applied = Some(new);
                Ok(script)
            }
            Err(e) => {
                self.applied = None;
                Err(e)
            }
        }
    }
}
