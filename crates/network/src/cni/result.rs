//! Reading plugins' answers: the pod's addresses from an ADD result in
//! any spec version (0.3.0 and later list `ips` with an index into
//! `interfaces`; 0.1/0.2 have `ip4`/`ip6`), and a VERSION answer's
//! `supportedVersions`.
//!
//! Upstream counterpart: libcni's `pkg/types/100` and `040` result
//! types, and how the kubelet took the pod IP from the sandbox's eth0.

use std::net::IpAddr;

use serde_json::Value;

use super::Error;

/// The pod's addresses in an ADD result: those on an interface inside
/// the sandbox (or not tied to an interface); host-side interfaces'
/// addresses (a bridge's gateway) are not the pod's. `None` if none.
pub fn ips_of(result: &Value) -> Option<Vec<IpAddr>> {
    let addr = |v: &Value| -> Option<IpAddr> {
        let s = v.as_str()?;
        s.split('/').next()?.parse().ok()
    };
    let mut out = Vec::new();
    if let Some(ips) = result.get("ips").and_then(Value::as_array) {
        let ifaces = result.get("interfaces").and_then(Value::as_array);
        for ip in ips {
            let in_pod = match (ip.get("interface").and_then(Value::as_u64), ifaces) {
                (Some(i), Some(ifs)) => ifs
                    .get(i as usize)
                    .and_then(|f| f.get("sandbox"))
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
                _ => true,
            };
            if in_pod {
                out.extend(ip.get("address").and_then(addr));
            }
        }
    } else {
        for key in ["ip4", "ip6"] {
            out.extend(result.get(key).and_then(|v| v.get("ip")).and_then(addr));
        }
    }
    // IPv4 first: status.podIP is the first of podIPs, and the rest of
    // the node speaks IPv4.
    out.sort_by_key(|ip| ip.is_ipv6());
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// The versions a plugin's VERSION answer lists.
pub fn supported_versions(plugin: &str, out: &[u8]) -> Result<Vec<String>, Error> {
    let bad = |reason: String| Error::BadResult {
        plugin: plugin.to_string(),
        op: "VERSION",
        reason,
    };
    let v: Value = serde_json::from_slice(out).map_err(|e| bad(e.to_string()))?;
    let list = v
        .get("supportedVersions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no supportedVersions".into()))?;
    Ok(list
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pod_addresses_skip_host_interfaces() {
        // What the bridge plugin returns: the bridge, the host veth, then
        // the pod's eth0 (index 2, with a sandbox path).
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:00:00:00:00:01"},
                {"name": "veth1", "mac": "aa:00:00:00:00:02"},
                {"name": "eth0", "mac": "aa:00:00:00:00:03", "sandbox": "/run/netns/p"}
            ],
            "ips": [
                {"address": "fd00::5/64", "interface": 2},
                {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2},
                {"address": "10.1.0.1/24", "interface": 0}
            ]
        });
        assert_eq!(ips_of(&r).unwrap(), vec![ip("10.1.0.5"), ip("fd00::5")]);
    }

    #[test]
    fn ipam_results_and_old_versions() {
        // host-local alone: no interfaces, 0.3.1 with "version".
        let r = json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.2.0.9/16"}]});
        assert_eq!(ips_of(&r).unwrap(), vec![ip("10.2.0.9")]);
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.3.0.4/24", "gateway": "10.3.0.1"}});
        assert_eq!(ips_of(&r).unwrap(), vec![ip("10.3.0.4")]);
        assert_eq!(ips_of(&json!({"cniVersion": "1.0.0"})), None);
    }

    #[test]
    fn version_answers() {
        let v = supported_versions(
            "bridge",
            br#"{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}"#,
        )
        .unwrap();
        assert_eq!(v, vec!["0.3.1", "0.4.0", "1.0.0"]);
        let e = supported_versions("bridge", b"{}").unwrap_err().to_string();
        assert!(
            e.contains("VERSION") && e.contains("supportedVersions"),
            "{e}"
        );
    }
}
