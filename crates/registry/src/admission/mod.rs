//! The admission plugins that need other objects than the one written:
//! what they decide, as pure functions over the objects they read. The
//! API server looks those objects up and calls these.
//!
//! Upstream counterparts: `plugin/pkg/admission/priority`,
//! `plugin/pkg/admission/limitranger` and the ResourceQuota admission of
//! `k8s.io/apiserver/pkg/admission/plugin/resourcequota` with the quota
//! evaluators of `pkg/quota/v1/evaluator/core`. The plugins that need
//! nothing but the object itself (service account, default tolerations)
//! live in the pod strategy ([`crate::resources::pod::admission`]).

pub mod limits;
pub mod priority;
pub mod quota;
#[cfg(test)]
mod tests;

/// Join messages as upstream's `utilerrors.NewAggregate` prints them: one
/// message alone, several in brackets.
pub fn aggregate(messages: &[String]) -> String {
    match messages {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}
