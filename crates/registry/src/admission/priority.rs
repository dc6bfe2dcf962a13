//! Priority admission: a new pod's `spec.priority` and `preemptionPolicy`
//! come from its PriorityClass, or from the global default class when it
//! names none.
//!
//! Upstream counterpart: `plugin/pkg/admission/priority/admission.go`
//! (`admitPod`, `getDefaultPriority`).

use serde_json::{Map, Value};

use crate::resources::util::str_field;

/// What a pod without a class gets when no class is the global default.
const NO_DEFAULT_PRIORITY: i64 = 0;
const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

/// The global default class: the one marked `globalDefault` (the lowest
/// value when several are).
pub fn global_default(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0))
}

/// Set the priority of a new pod's `spec` from `class` (the class its
/// `priorityClassName` names, already looked up, or the global default
/// when it names none; `None` when there is no default). The error is
/// the reason of a 403.
pub fn admit(spec: &mut Map<String, Value>, class: Option<&Value>) -> Result<(), String> {
    let named = str_field(spec, "priorityClassName").to_string();
    let (priority, preemption) = match class {
        Some(c) => (
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_PREEMPTION)
                .to_string(),
        ),
        None if named.is_empty() => (NO_DEFAULT_PRIORITY, DEFAULT_PREEMPTION.to_string()),
        None => return Err(format!("no PriorityClass with name {named} was found")),
    };
    if named.is_empty() {
        if let Some(c) = class {
            let name = c.pointer("/metadata/name").and_then(Value::as_str);
            spec.insert("priorityClassName".into(), name.unwrap_or("").into());
        }
    }
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; \
                 priority admission controller computed {priority} from the given PriorityClass name"
            ));
        }
    }
    spec.insert("priority".into(), priority.into());
    let given = str_field(spec, "preemptionPolicy");
    if !given.is_empty() && given != preemption {
        return Err(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; \
             priority admission controller computed {preemption} from the given PriorityClass name"
        ));
    }
    spec.insert("preemptionPolicy".into(), preemption.into());
    Ok(())
}
