//! Which resources the server serves, found through its discovery API.
//!
//! Upstream counterpart: client-go's `ServerPreferredResources` as the
//! namespace deleter and the garbage collector use it — one preferred
//! version per group, and a failing group reported beside the groups that
//! answered instead of failing the whole discovery.

use std::collections::BTreeMap;

use kube::discovery::{verbs, ApiResource, Scope};

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing API groups: {0}")]
    Groups(#[source] kube::Error),
}

/// One served resource in its preferred version.
#[derive(Clone, Debug)]
pub struct Served {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl Served {
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// `plural.group`, as upstream prints a GroupResource in conditions.
    pub fn group_resource(&self) -> String {
        format!("{}.{}", self.ar.plural, self.ar.group)
    }
}

/// What discovery found: the resources of every group that answered and
/// the error of each group that did not.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    pub resources: Vec<Served>,
    pub failed_groups: BTreeMap<String, String>,
}

impl Discovered {
    /// The resource serving `kind` in `group` (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&Served> {
        self.resources
            .iter()
            .find(|s| s.ar.group == group && s.ar.kind == kind)
    }
}

/// Discover every group's preferred resources (subresources excluded).
pub async fn discover(client: &kube::Client) -> Result<Discovered, Error> {
    let groups = client.list_api_groups().await.map_err(Error::Groups)?;
    let mut names: Vec<String> = vec![String::new()];
    names.extend(groups.groups.into_iter().map(|g| g.name));
    let mut found = Discovered::default();
    for name in names {
        match kube::discovery::group(client, &name).await {
            Ok(group) => {
                for (ar, caps) in group.recommended_resources() {
                    found.resources.push(Served {
                        namespaced: caps.scope == Scope::Namespaced,
                        verbs: caps.operations.clone(),
                        ar,
                    });
                }
            }
            Err(e) => {
                let shown = if name.is_empty() { "core/v1" } else { &name };
                found.failed_groups.insert(shown.to_string(), e.to_string());
            }
        }
    }
    Ok(found)
}

/// Whether `s` can be listed and watched (what an informer needs).
pub fn is_list_watch(s: &Served) -> bool {
    s.supports(verbs::LIST) && s.supports(verbs::WATCH)
}
