//! EndpointSlices: the address family fixed at creation, every endpoint
//! with its addresses.
//!
//! Upstream counterpart: `pkg/registry/discovery/endpointslice/strategy.go`
//! and `ValidateEndpointSlice{Create,Update}` in
//! `pkg/apis/discovery/validation`.

use rkube_machinery::{FieldError, FieldPath};
use serde_json::Value;

use crate::resources::util::{items, str_at};
use crate::Strategy;

/// Most addresses one endpoint may list.
const MAX_ADDRESSES: usize = 100;

pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let family = str_at(obj, "/addressType");
        if !matches!(family, "IPv4" | "IPv6" | "FQDN") {
            errs.push(FieldError::not_supported(
                &FieldPath::new("addressType"),
                family,
                &["FQDN", "IPv4", "IPv6"],
            ));
        }
        let endpoints = FieldPath::new("endpoints");
        for (i, ep) in items(obj, "endpoints").iter().enumerate() {
            let path = endpoints.index(i).child("addresses");
            let addresses = items(ep, "addresses");
            if addresses.is_empty() {
                errs.push(FieldError::required(
                    &path,
                    "must contain at least 1 address",
                ));
            } else if addresses.len() > MAX_ADDRESSES {
                errs.push(FieldError::too_many(
                    &path,
                    Some(addresses.len()),
                    Some(MAX_ADDRESSES),
                ));
            }
            for (j, a) in addresses.iter().enumerate() {
                let a = a.as_str().unwrap_or("");
                let ok = match family {
                    "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                    "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                    _ => !a.is_empty(),
                };
                if !ok {
                    errs.push(FieldError::invalid(
                        &path.index(j),
                        a,
                        format!("must be a valid {family} address"),
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let family = str_at(new, "/addressType");
        if family != str_at(old, "/addressType") {
            errs.push(FieldError::invalid(
                &FieldPath::new("addressType"),
                family,
                "field is immutable",
            ));
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slices_keep_their_family_and_list_addresses() {
        let slice = json!({"addressType": "IPv4", "endpoints": [
            {"addresses": ["10.42.0.5"]}, {"addresses": []}, {"addresses": ["fe80::1"]}]});
        let errs: Vec<String> = EndpointSliceStrategy
            .validate(&slice)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errs,
            [
                "endpoints[1].addresses: Required value: must contain at least 1 address",
                r#"endpoints[2].addresses[0]: Invalid value: "fe80::1": must be a valid IPv4 address"#,
            ]
        );
        let v6 = json!({"addressType": "IPv6"});
        let old = json!({"addressType": "IPv4"});
        assert_eq!(
            EndpointSliceStrategy.validate_update(&v6, &old)[0].to_string(),
            r#"addressType: Invalid value: "IPv6": field is immutable"#
        );
    }
}
