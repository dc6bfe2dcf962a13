//! The controller manager reaches the cluster only through the API: it must
//! not depend, even indirectly, on the storage, registry or API server
//! crates (Kubernetes keeps the same rule in import-restrictions.yaml).

use std::process::Command;

#[test]
fn controllers_never_link_server_internals() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "rkube-controllers",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("rkube-controllers"),
        "unexpected tree:\n{tree}"
    );
    for forbidden in ["rkube-storage", "rkube-registry", "rkube-apiserver"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(forbidden)),
            "rkube-controllers depends on {forbidden}"
        );
    }
}
