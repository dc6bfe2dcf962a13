//! Layer-level behaviour: images built from a directory tree, and layers
//! whose uncompressed bytes do not match the config's diff ids.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::client::Client;
use rkube_containers::image::oci::{self, Descriptor, Digest, Manifest};
use rkube_containers::image::{ImageService, RegistriesConfig};
use support::registry::Registry;

fn http_mirror(addr: &str) -> RegistriesConfig {
    RegistriesConfig::parse(&format!(
        "mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn image_from_a_directory_keeps_links_and_modes() {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    fs::create_dir_all(s.join("usr/bin")).unwrap();
    fs::write(s.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(
        s.join("usr/bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    fs::hard_link(s.join("usr/bin/tool"), s.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("usr/bin", s.join("bin")).unwrap();

    let layer = LayerBuilder::from_dir(s).unwrap();
    let built = ImageBuilder::new().layer(layer).build().unwrap();
    // Deterministic: the same tree gives the same digest.
    let again = ImageBuilder::new()
        .layer(LayerBuilder::from_dir(s).unwrap())
        .build()
        .unwrap();
    assert_eq!(built.manifest_digest, again.manifest_digest);

    let out = tempfile::tempdir().unwrap();
    built
        .write_oci_archive("dir/image:1", &out.path().join("i.tar"))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let image = svc
        .import(&out.path().join("i.tar"))
        .await
        .unwrap()
        .remove(0);
    let top = &svc.rootfs_layers(&image)[0];
    assert_eq!(
        fs::read(top.join("usr/bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(
        fs::metadata(top.join("usr/bin/tool")).unwrap().mode() & 0o777,
        0o750
    );
    let (a, b) = (
        fs::metadata(top.join("usr/bin/tool")).unwrap(),
        fs::metadata(top.join("usr/bin/tool2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "hard link preserved");
    assert_eq!(
        fs::read_link(top.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
}

#[tokio::test]
async fn diff_id_mismatch_is_refused_and_rolled_back() {
    let reg = Registry::start();
    let mut img = ImageBuilder::new()
        .layer(LayerBuilder::new().file("f", "real", 0o644))
        .build()
        .unwrap();
    // Re-sign the image with a config that lies about the layer's contents.
    let wrong = Digest::of(b"not the layer");
    let mut config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    config["rootfs"]["diff_ids"][0] = serde_json::json!(wrong.to_string());
    img.config = serde_json::to_vec(&config).unwrap().into();
    img.config_desc = Descriptor::new(
        oci::OCI_CONFIG,
        Digest::of(&img.config),
        img.config.len() as u64,
    );
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        config: img.config_desc.clone(),
        layers: img.layers.iter().map(|(d, _)| d.clone()).collect(),
    };
    img.manifest = serde_json::to_vec(&manifest).unwrap().into();
    img.manifest_digest = Digest::of(&img.manifest);
    let reference = format!("{}/lying/config:1", reg.addr);
    img.push(&Client::new(http_mirror(&reg.addr)), &reference)
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirror(&reg.addr)).unwrap();
    let err = svc.pull(&reference, None).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("layer diff id mismatch: config says {wrong}")),
        "{err}"
    );
    assert!(svc.list().unwrap().is_empty());
    let entries = |p: &str| fs::read_dir(root.path().join(p)).unwrap().count();
    assert_eq!(
        entries("content/blobs/sha256"),
        0,
        "config and layer blobs rolled back"
    );
    assert_eq!(
        entries("snapshots"),
        0,
        "no snapshot, not even a temporary one"
    );
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_both_succeed() {
    let reg = Registry::start();
    let image = ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
        .layer(LayerBuilder::new().file("top", "top", 0o644))
        .build()
        .unwrap();
    let reference = format!("{}/same/app:1", reg.addr);
    image
        .push(&Client::new(http_mirror(&reg.addr)), &reference)
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirror(&reg.addr)).unwrap();
    let (a, b) = tokio::join!(svc.pull(&reference, None), svc.pull(&reference, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.layers, b.layers);
    let layers = svc.rootfs_layers(&a);
    assert_eq!(fs::read_to_string(layers[0].join("top")).unwrap(), "top");
    assert!(layers[1].join("bin/busybox").is_file());
    // Racing unpacks of the same layer leave one snapshot each, no temp dirs.
    let names: Vec<String> = fs::read_dir(root.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(svc.list().unwrap().len(), 1);
}
