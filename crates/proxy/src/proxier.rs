//! The sync loop's state: the fragments in force, so each sync sends only
//! what changed. A sync can cover every Service or just the Services that
//! changed (a partial sync: only their ports are recomputed and compared);
//! after a failed apply the next sync must replace the whole table.
//!
//! Upstream counterpart: the nftables Proxier's syncProxyRules (partial
//! syncs of changed Services, with a full sync after errors).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::ServicePort;
use crate::nft::{Error, Nft};
use crate::rules::{self, Config};
use crate::script::{self, Applied, Changes};

/// Keeps the table in step with the Service ports it is given.
pub struct Proxier {
    cfg: Config,
    nft: Arc<dyn Nft>,
    /// What is in force; None before the first sync or after an error.
    applied: Option<Applied>,
}

impl Proxier {
    pub fn new(cfg: Config, nft: Arc<dyn Nft>) -> Proxier {
        Proxier {
            cfg,
            nft,
            applied: None,
        }
    }

    /// Whether a partial sync is possible (the table in force is known).
    pub fn in_sync(&self) -> bool {
        self.applied.is_some()
    }

    /// Brings the rules to `ports`, all Service ports there are; returns
    /// the script applied (empty when nothing changed).
    pub fn sync(&mut self, ports: &[ServicePort]) -> Result<String, Error> {
        let new = rules::fragments(&self.cfg, ports);
        let Some(applied) = &self.applied else {
            let script = script::full(&self.cfg, &new);
            return match self.nft.apply(&script) {
                Ok(()) => {
                    self.applied = Some(Applied::new(new));
                    Ok(script)
                }
                Err(e) => Err(e),
            };
        };
        let mut changes: Changes = applied
            .fragments()
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| (k.clone(), None))
            .collect();
        changes.extend(new.into_iter().map(|(k, f)| (k, Some(f))));
        self.apply(changes)
    }

    /// Brings the rules of the Services `services` (`namespace/name`) to
    /// `ports`, which holds the ports of those Services only (one absent
    /// from it has no rules any more); other Services are not looked at.
    /// Needs [`Proxier::in_sync`]; otherwise sync everything first.
    pub fn sync_services(
        &mut self,
        services: &BTreeSet<String>,
        ports: &[ServicePort],
    ) -> Result<String, Error> {
        let Some(applied) = &self.applied else {
            return Err(Error::OutOfSync);
        };
        let mut changes = Changes::new();
        for svc in services {
            let prefix = format!("{svc}/");
            changes.extend(applied.ids_with_prefix(&prefix).map(|k| (k.clone(), None)));
        }
        for sp in ports {
            changes.insert(sp.id(), Some(rules::fragment(&self.cfg, sp)));
        }
        self.apply(changes)
    }

    fn apply(&mut self, mut changes: Changes) -> Result<String, Error> {
        let Some(applied) = &mut self.applied else {
            return Err(Error::OutOfSync);
        };
        applied.prune(&mut changes);
        let script = applied.diff(&changes);
        if script.is_empty() {
            return Ok(script);
        }
        match self.nft.apply(&script) {
            Ok(()) => {
                applied.commit(changes);
                Ok(script)
            }
            Err(e) => {
                self.applied = None;
                Err(e)
            }
        }
    }
}
