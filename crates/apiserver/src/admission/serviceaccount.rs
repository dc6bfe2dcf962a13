//! The ServiceAccount plugin's part that reads the account: a new pod
//! without imagePullSecrets gets its ServiceAccount's.
//!
//! Upstream counterpart: `plugin/pkg/admission/serviceaccount`
//! (`Admit`: "if the pod has no ImagePullSecrets, copy the service
//! account's"). The rest of that plugin (the default account name, the
//! `kube-api-access-*` volume) needs no other object and lives with the
//! pod strategy in `rkube_registry::resources::pod::admission`. Mirror
//! pods are left alone, as upstream does: a static pod may not refer to
//! API objects.

use serde_json::Value;

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The account a new pod runs as (`default` when it names none).
pub fn account_of(pod: &Value) -> Option<&str> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION))
    {
        return None;
    }
    let spec = pod.get("spec")?;
    let named = ["serviceAccountName", "serviceAccount"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_str))
        .find(|n| !n.is_empty());
    Some(named.unwrap_or("default"))
}

/// Whether the pod lists pull secrets of its own (then the account's are
/// not added).
pub fn has_pull_secrets(pod: &Value) -> bool {
    pod.pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// Copies the account's imagePullSecrets into a pod that has none.
pub fn copy_pull_secrets(pod: &mut Value, account: &Value) {
    if has_pull_secrets(pod) {
        return;
    }
    let Some(secrets) = account
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    let refs: Vec<Value> = secrets
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .map(|name| serde_json::json!({ "name": name }))
        .collect();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("imagePullSecrets".into(), Value::Array(refs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_accounts_pull_secrets_go_to_pods_without_their_own() {
        let account = json!({"imagePullSecrets": [{"name": "regcred"}, {"name": "other"}]});
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        assert_eq!(account_of(&pod), Some("default"));
        copy_pull_secrets(&mut pod, &account);
        assert_eq!(
            pod["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}, {"name": "other"}])
        );
        let mut own = json!({"spec": {"serviceAccountName": "builder",
                                      "imagePullSecrets": [{"name": "mine"}]}});
        assert_eq!(account_of(&own), Some("builder"));
        copy_pull_secrets(&mut own, &account);
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
        let mirror = json!({"metadata": {"annotations": {MIRROR_POD_ANNOTATION: "x"}},
                            "spec": {}});
        assert_eq!(account_of(&mirror), None);
        let mut bare = json!({"spec": {}});
        copy_pull_secrets(&mut bare, &json!({"metadata": {"name": "default"}}));
        assert!(bare["spec"].get("imagePullSecrets").is_none());
    }
}
