//! The handover between client-side `kubectl apply` (which keeps the
//! applied configuration in an annotation) and `kubectl apply
//! --server-side`.
//!
//! Upstream counterpart: `k8s.io/apimachinery/pkg/util/managedfields/
//! internal/lastappliedmanager.go` and `lastappliedupdater.go`. Only the
//! field manager `kubectl` gets this treatment, so other appliers (and
//! users who pick another name) opt out:
//!
//! * conflicts on fields whose live value still equals the annotation's
//!   are the user's own earlier client-side apply, so they do not block
//!   the first server-side apply;
//! * after a server-side apply, an existing annotation is rewritten to the
//!   new configuration so a later client-side apply diffs correctly.

use serde_json::Value;

use super::path::write_go_json;
use super::schema::ApplySchema;
use super::set::FieldSet;
use super::typed::{compare, field_set};

pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The only field manager the handover applies to.
pub const KUBECTL_MANAGER: &str = "kubectl";
/// Total size of an object's annotations (keys and values) the API
/// accepts (upstream `TotalAnnotationSizeLimitB`).
const ANNOTATIONS_SIZE_LIMIT: usize = 256 * 1024;

fn annotation(obj: &Value) -> Option<&str> {
    obj.get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Fields the annotation claims and the live object still holds with the
/// annotation's values; `None` when there is no usable annotation.
pub(crate) fn allowed_conflicts(
    live: &Value,
    api_version: &str,
    schema: &dyn ApplySchema,
) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    let mut live = live.clone();
    super::managed::strip(&mut live);
    let cmp = compare(Some(&last), Some(&live), schema);
    Some(
        field_set(&last, schema)
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// Rewrites an existing annotation on `obj` to `applied` (without the
/// annotation itself), as Go's JSON encoder would write it; drops the
/// annotation if it would make the annotations too large.
pub(crate) fn sync(obj: &mut Value, applied: &Value) {
    if annotation(obj).is_none() {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(ann)) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        ann.remove(LAST_APPLIED_ANNOTATION);
        if ann.is_empty() {
            if let Some(Value::Object(meta)) = config.get_mut("metadata") {
                meta.remove("annotations");
            }
        }
    }
    let mut text = String::new();
    write_go_json(&mut text, &config);
    text.push('\n');
    let Some(Value::Object(ann)) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    else {
        return;
    };
    ann.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(text));
    let size: usize = ann
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > ANNOTATIONS_SIZE_LIMIT {
        ann.remove(LAST_APPLIED_ANNOTATION);
    }
}
