use super::*;
use crate::schema::Kind;
use std::collections::BTreeSet;

#[test]
fn normalizing_matches_go_names() {
    assert_eq!(normalize("pod_ip"), normalize("podIP"));
    assert_eq!(normalize("ref"), normalize("$ref"));
    assert_eq!(
        normalize("x_kubernetes_list_type"),
        normalize("x-kubernetes-list-type")
    );
    assert_eq!(lower_camel("binary_data"), "binaryData");
}

#[test]
fn pod_status_names_come_from_the_schema() {
    let index = schema::find("api.core.v1", "PodStatus").unwrap();
    let message = schema::message(index);
    let names: Vec<&str> = fields(index).iter().map(|f| f.name.as_str()).collect();
    let position = |name: &str| message.fields.iter().position(|f| f.name == name).unwrap();
    assert_eq!(names[position("pod_ip")], "podIP");
    assert_eq!(names[position("host_ips")], "hostIPs");
}

/// Messages whose JSON form is custom (see `special`): they have no
/// property-per-field definition to check against.
fn is_special(index: usize) -> bool {
    crate::special::transcode(schema::message(index), &Vec::new(), 0)
        .ok()
        .flatten()
        .is_some()
}

/// Every proto field reachable from every served kind has a JSON property in
/// k8s-openapi's schema (inlined structs checked against their parent), so
/// no field silently falls back to a guessed name; and every scalar among
/// them has its Go zero-value rule in data/go_fields.txt.
#[test]
fn every_catalog_field_maps_to_a_schema_property() {
    let definitions = definitions();
    let by_name: HashMap<String, &Map<String, Value>> = definitions
        .iter()
        .filter_map(|(name, def)| Some((name.to_ascii_lowercase(), def.as_object()?)))
        .collect();
    let mut missing = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut pending = Vec::new();
    for resource in rkube_api::catalog::all() {
        let package = schema::package_of(resource.group, resource.version)
            .unwrap_or_else(|| panic!("no package for {}", resource.api_version()));
        let index = schema::find(package, resource.kind).unwrap_or_else(|| {
            panic!(
                "no message for {} {}",
                resource.api_version(),
                resource.kind
            )
        });
        pending.push(index);
    }
    while let Some(index) = pending.pop() {
        if !seen.insert(index) || is_special(index) {
            continue;
        }
        let message = schema::message(index);
        let name = definition_name(message).to_ascii_lowercase();
        let Some(definition) = by_name.get(&name) else {
            missing.insert(format!("{} (no definition)", message.full_name()));
            continue;
        };
        check_fields(index, definition, &mut missing, &mut pending);
    }
    let expected: BTreeSet<String> = KNOWN_PROTO_ONLY.iter().map(|s| s.to_string()).collect();
    assert_eq!(missing, expected, "fields without a JSON property");
    assert!(seen.len() > 300, "walked only {} messages", seen.len());
}

/// Proto fields that have no JSON counterpart in the served (v1.33) schemas:
/// k8s-pb 0.9 was generated from a newer release. Their camelCase fallback
/// names are the upstream JSON names (checked by hand against the Go types),
/// and a v1.33 server drops them as unknown fields anyway.
const KNOWN_PROTO_ONLY: &[&str] = &[
    "api.core.v1.Container.restart_policy_rules",
    "api.core.v1.ContainerRestartRule (no definition)",
    "api.core.v1.EnvVarSource.file_key_ref",
    "api.core.v1.EphemeralContainerCommon.restart_policy_rules",
    "api.core.v1.FileKeySelector (no definition)",
    "api.core.v1.NodeStatus.declared_features",
    "api.core.v1.PodCertificateProjection (no definition)",
    "api.core.v1.PodExtendedResourceClaimStatus (no definition)",
    "api.core.v1.PodSpec.hostname_override",
    "api.core.v1.PodSpec.workload_ref",
    "api.core.v1.PodStatus.allocated_resources",
    "api.core.v1.PodStatus.extended_resource_claim_status",
    "api.core.v1.PodStatus.resources",
    "api.core.v1.VolumeProjection.pod_certificate",
    "api.core.v1.WorkloadReference (no definition)",
    "api.storage.v1.CSIDriverSpec.service_account_token_in_secrets",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionCondition.observed_generation",
    "apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus.observed_generation",
];

fn check_fields(
    index: usize,
    definition: &Map<String, Value>,
    missing: &mut BTreeSet<String>,
    pending: &mut Vec<usize>,
) {
    let message = schema::message(index);
    for field in message.fields {
        if field.inline {
            if let Kind::Message(child) = field.kind {
                check_fields(child, definition, missing, pending);
                continue;
            }
        }
        if field.zero == crate::schema::Zero::Unknown && !matches!(field.kind, Kind::Message(_)) {
            missing.insert(format!(
                "{}.{} (zero rule unknown)",
                message.full_name(),
                field.name
            ));
        }
        if from_schema(definition, field.name).is_none() {
            missing.insert(format!("{}.{}", message.full_name(), field.name));
        }
        // Map values and list items are messages of their own too.
        if let Kind::Message(child) = field.kind {
            pending.push(child);
        }
    }
}
