//! CREATE: metadata the server owns, strategy defaulting and validation,
//! then a create-if-absent in the store.
//!
//! Upstream counterpart: `rest.BeforeCreate` and `Store.Create`.

use rkube_machinery::names::{generate_name, validate_name, FastRandom, NameRule};
use rkube_machinery::{FieldError, FieldPath, StatusError};
use serde_json::Value;

use rkube_machinery::time::format_time;

use crate::{meta, storage_error, ResourceStore, Result};

/// How often a generated name is retried when it collides.
const GENERATE_NAME_ATTEMPTS: usize = 8;

impl ResourceStore {
    /// Create `obj` in `namespace` (which the URL named). With `dry_run`,
    /// everything but the write happens.
    pub async fn create(
        &self,
        namespace: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value> {
        self.prepare_create(namespace, &mut obj)?;
        let generated = meta::name(&obj).is_empty();
        for _ in 0..GENERATE_NAME_ATTEMPTS {
            if generated {
                let base = meta::meta_str(&obj, "generateName").to_string();
                meta::set(&mut obj, "name", generate_name(&base, &mut FastRandom));
            }
            self.validate_create(&obj)?;
            self.strategy.before_create(&mut obj, dry_run).await?;
            if dry_run {
                return Ok(obj);
            }
            let name = meta::name(&obj).to_string();
            let key = self.key(namespace, &name);
            match self
                .store
                .create(&key, self.encode(&obj), self.strategy.ttl())
                .await
            {
                Ok(kv) => {
                    meta::set(&mut obj, "resourceVersion", kv.mod_revision.to_string());
                    return Ok(obj);
                }
                Err(rkube_storage::Error::AlreadyExists { .. }) if generated => {
                    self.release_after(&Value::Null, &obj).await;
                    continue;
                }
                Err(e) => {
                    self.release_after(&Value::Null, &obj).await;
                    return Err(storage_error(self, &name, e));
                }
            }
        }
        Err(StatusError::generate_name_conflict(
            &self.group_resource(),
            meta::name(&obj),
            1,
        ))
    }

    fn prepare_create(&self, namespace: Option<&str>, obj: &mut Value) -> Result<()> {
        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), self.api_version().into());
            map.insert("kind".into(), self.info.kind.into());
        } else {
            return Err(StatusError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if !meta::resource_version(obj).is_empty() {
            return Err(StatusError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        self.check_namespace(namespace, obj)?;
        let now = format_time(&self.clock.now());
        let m = meta::metadata_mut(obj);
        m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        m.insert("creationTimestamp".into(), now.into());
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("generation");
        if self.strategy.tracks_generation() {
            m.insert("generation".into(), 1.into());
        }
        self.strategy.prepare_for_create(obj);
        Ok(())
    }

    /// The namespace in the body must agree with the URL; cluster-scoped
    /// objects have none.
    pub(crate) fn check_namespace(&self, namespace: Option<&str>, obj: &mut Value) -> Result<()> {
        if !self.info.namespaced {
            meta::remove(obj, "namespace");
            return Ok(());
        }
        let Some(ns) = namespace else {
            return Err(StatusError::bad_request(format!(
                "{} is namespaced: a namespace must be given",
                self.info.plural
            )));
        };
        match meta::namespace(obj) {
            "" => meta::set(obj, "namespace", ns),
            body if body == ns => {}
            _ => {
                return Err(StatusError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ))
            }
        }
        Ok(())
    }

    fn validate_create(&self, obj: &Value) -> Result<()> {
        let mut errs = validate_object_meta(obj, self.name_rule());
        errs.extend(self.strategy.validate(obj));
        self.invalid_if_any(obj, errs)
    }

    pub(crate) fn invalid_if_any(&self, obj: &Value, errs: Vec<FieldError>) -> Result<()> {
        if errs.is_empty() {
            Ok(())
        } else {
            Err(StatusError::invalid(
                &self.group_kind(),
                meta::name(obj),
                &errs,
            ))
        }
    }

    /// Which rule names of this resource follow (upstream's per-resource
    /// `ValidateXName`).
    pub(crate) fn name_rule(&self) -> NameRule {
        match self.info.plural {
            "namespaces" | "services" | "replicationcontrollers" => NameRule::Dns1123Label,
            _ => NameRule::Dns1123Subdomain,
        }
    }
}

/// The generic `metadata` checks every object passes.
pub(crate) fn validate_object_meta(obj: &Value, rule: NameRule) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let md = FieldPath::new("metadata");
    let name = meta::name(obj);
    let generate = meta::meta_str(obj, "generateName");
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(FieldError::required(
                &md.child("name"),
                "name or generateName is required",
            ));
        } else {
            for msg in validate_name(generate, rule, true) {
                errs.push(FieldError::invalid(
                    &md.child("generateName"),
                    generate,
                    msg,
                ));
            }
        }
    } else {
        for msg in validate_name(name, rule, false) {
            errs.push(FieldError::invalid(&md.child("name"), name, msg));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rkube_api::catalog;
    use rkube_storage::sqlite::SqliteStore;
    use serde_json::{json, Value};

    use crate::resources::strategy_for;
    use crate::{ResourceStore, SystemClock};

    /// What a create stores is the object without its resourceVersion,
    /// byte for byte what encoding a copy with the field removed gives.
    #[test]
    fn stored_bytes_leave_out_the_resource_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let info = catalog::lookup("", "v1", "configmaps").unwrap();
        let rs = ResourceStore::new(info, strategy_for(info), kv, Arc::new(SystemClock));
        for obj in [
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "7",
                   "labels": {"z": "1"}, "uid": "u"}, "data": {"k": "v\"\n"}}),
            json!({"metadata": {"resourceVersion": "7"}}),
            json!({"metadata": {"name": "b"}, "apiVersion": "v1", "zz": [1, 2.5, null]}),
            json!({"metadata": {}}),
            json!({"metadata": "odd", "data": {}}),
            json!({"data": {}}),
        ] {
            let mut expected = obj.clone();
            crate::meta::remove(&mut expected, "resourceVersion");
            let stored = rs.encode(&obj);
            assert_eq!(stored, serde_json::to_vec(&expected).unwrap(), "{obj}");
            let back: Value = serde_json::from_slice(&stored).unwrap();
            assert!(back.pointer("/metadata/resourceVersion").is_none(), "{obj}");
        }
    }
}
