//! The strategic-merge metadata of built-in types (from `rkube_api`), in
//! the shape the patch engine (`rkube_machinery`) asks for.

use rkube_api::merge_keys::{field_type, patch_meta, Strategy};
use rkube_machinery::patch::strategic::{FieldMeta, ListStrategy, PatchSchema};

/// Patch metadata of a built-in type, walked from its root type.
pub struct TypeSchema {
    pub root: &'static str,
}

impl PatchSchema for TypeSchema {
    fn field(&self, path: &[&str]) -> FieldMeta {
        let Some((last, parents)) = path.split_last() else {
            return FieldMeta::default();
        };
        let mut ty = self.root;
        for field in parents {
            match field_type(ty, field) {
                Some(t) => ty = t,
                None => return FieldMeta::default(),
            }
        }
        let Some(meta) = patch_meta(ty, last) else {
            return FieldMeta::default();
        };
        let list = match (meta.strategy, meta.merge_key) {
            (Strategy::Merge | Strategy::RetainKeysMerge, Some(key)) => {
                ListStrategy::MergeByKey(key.to_string())
            }
            (Strategy::Merge, None) => ListStrategy::Set,
            _ => ListStrategy::Atomic,
        };
        FieldMeta {
            list,
            replace: meta.strategy == Strategy::Replace,
            retain_keys: matches!(
                meta.strategy,
                Strategy::RetainKeys | Strategy::RetainKeysMerge
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_containers_merge_by_name() {
        let schema = TypeSchema {
            root: "io.k8s.api.core.v1.Pod",
        };
        assert_eq!(
            schema.field(&["spec", "containers"]).list,
            ListStrategy::MergeByKey("name".into())
        );
        assert_eq!(
            schema.field(&["spec", "containers", "ports"]).list,
            ListStrategy::MergeByKey("containerPort".into())
        );
        assert_eq!(
            schema.field(&["metadata", "finalizers"]).list,
            ListStrategy::Set
        );
        assert_eq!(
            schema.field(&["spec", "tolerations"]).list,
            ListStrategy::Atomic
        );
    }
}
