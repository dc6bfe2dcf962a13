//! The import rule of shared/STYLE.md, checked over `cargo metadata`:
//! components reach the cluster only through the API, so none of them may
//! depend on the storage, registry or apiserver crates (in the spirit of
//! Kubernetes' import-restrictions.yaml).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Crates that act as API clients.
const COMPONENTS: &[&str] = &[
    "rkube-controllers",
    "rkube-scheduler",
    "rkube-kubelet",
    "rkube-proxy",
    "rkube-dns",
    "rkube-network",
];
/// Crates only the server side may use.
const SERVER_ONLY: &[&str] = &["rkube-storage", "rkube-registry", "rkube-apiserver"];

/// Each workspace crate and the workspace crates it depends on, directly
/// or not (normal dependencies only).
fn workspace_graph() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"].is_null())
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    let mut direct: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if !members.contains(name) {
            continue;
        }
        let deps = p["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .filter_map(|d| d["name"].as_str())
            .filter(|d| members.contains(*d))
            .map(str::to_string)
            .collect();
        direct.insert(name.to_string(), deps);
    }
    // Transitive closure.
    let mut all = BTreeMap::new();
    for name in direct.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<String> = direct[name].iter().cloned().collect();
        while let Some(d) = stack.pop() {
            if seen.insert(d.clone()) {
                stack.extend(direct.get(&d).into_iter().flatten().cloned());
            }
        }
        all.insert(name.clone(), seen);
    }
    all
}

#[test]
fn components_do_not_import_server_internals() {
    let graph = workspace_graph();
    let mut violations = Vec::new();
    for component in COMPONENTS {
        let Some(deps) = graph.get(*component) else {
            continue;
        };
        for forbidden in SERVER_ONLY {
            if deps.contains(*forbidden) {
                violations.push(format!("{component} depends on {forbidden}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "components must use the API, not server crates: {violations:?}"
    );
}

#[test]
fn the_graph_is_read() {
    let graph = workspace_graph();
    assert!(
        graph["rkube-apiserver"].contains("rkube-storage"),
        "sanity: the apiserver uses the store"
    );
}
