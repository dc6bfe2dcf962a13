//! Behaviour tests of the image service against a real registry (Debian's
//! docker-registry on loopback) holding images built by `image::build`
//! from Debian's busybox-static.

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::Ordering;

use rkube_containers::image::build::{push_index, Compression, ImageBuilder, LayerBuilder};
use rkube_containers::image::client::Client;
use rkube_containers::image::{DockerConfig, ImageService, RegistriesConfig, RunConfig};
use support::registry::Registry;

const BUSYBOX: &str = "/bin/busybox";

/// registries.yaml that allows plain HTTP to the test registry (k3s style).
fn http_mirror(addr: &str) -> RegistriesConfig {
    RegistriesConfig::parse(&format!(
        "mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\n"
    ))
    .unwrap()
}

fn busybox_image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new(BUSYBOX)).unwrap())
        .config(RunConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hello".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            working_dir: Some("/tmp".into()),
            user: Some("65534".into()),
            ..Default::default()
        })
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn pull_fresh_then_cached() {
    let reg = Registry::start();
    let built = busybox_image().build().unwrap();
    built
        .push(
            &Client::new(http_mirror(&reg.addr)),
            &format!("{}/test/busybox:1", reg.addr),
        )
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirror(&reg.addr)).unwrap();
    let image = svc
        .pull(&format!("{}/test/busybox:1", reg.addr), None)
        .await
        .unwrap();
    assert_eq!(image.name, format!("{}/test/busybox:1", reg.addr));
    assert_eq!(image.manifest_digest, built.manifest_digest);
    assert_eq!(
        svc.stats().blob_downloads.load(Ordering::Relaxed),
        2,
        "config + one layer"
    );

    let lower = svc.rootfs_layers(&image);
    assert_eq!(lower.len(), 1);
    assert_eq!(
        fs::read_link(lower[0].join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // The unpacked binary runs: bytes and exec permission survived.
    let out = std::process::Command::new(lower[0].join("bin/busybox"))
        .args(["echo", "ok"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"ok\n");
    assert_eq!(
        fs::metadata(lower[0].join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );

    let config = svc.config(&image).unwrap();
    assert_eq!(
        config.entrypoint.as_deref(),
        Some(&["/bin/sh".to_string(), "-c".to_string()][..])
    );
    assert_eq!(
        (config.user.as_deref(), config.working_dir.as_deref()),
        (Some("65534"), Some("/tmp"))
    );

    // Cached: the tag is resolved again, but no blob is transferred.
    let blobs = fs::read_dir(root.path().join("content/blobs/sha256"))
        .unwrap()
        .count();
    let again = svc
        .pull(&format!("{}/test/busybox:1", reg.addr), None)
        .await
        .unwrap();
    assert_eq!(again.manifest_digest, image.manifest_digest);
    assert_eq!(svc.stats().blob_downloads.load(Ordering::Relaxed), 2);
    assert_eq!(svc.stats().manifest_requests.load(Ordering::Relaxed), 2);
    assert_eq!(count(&root.path().join("content/blobs/sha256")), blobs);

    // Pull by digest finds the same content.
    let by_digest = svc
        .pull(
            &format!("{}/test/busybox@{}", reg.addr, built.manifest_digest),
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_digest.config_digest, image.config_digest);
    assert_eq!(svc.list().unwrap().len(), 2);
    assert_eq!(
        svc.get(built.manifest_digest.as_str())
            .unwrap()
            .manifest_digest,
        built.manifest_digest
    );
}

#[tokio::test]
async fn multi_arch_index_resolves_to_amd64() {
    let reg = Registry::start();
    let client = Client::new(http_mirror(&reg.addr));
    let amd = ImageBuilder::new()
        .layer(LayerBuilder::new().file("arch", "amd64\n", 0o644))
        .build()
        .unwrap();
    let arm = ImageBuilder::new()
        .architecture("arm64")
        .layer(LayerBuilder::new().file("arch", "arm64\n", 0o644))
        .build()
        .unwrap();
    let reference = format!("{}/multi:latest", reg.addr);
    let index = push_index(&client, &reference, &[&arm, &amd])
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirror(&reg.addr)).unwrap();
    let image = svc
        .pull(&format!("{}/multi", reg.addr), None)
        .await
        .unwrap();
    assert_eq!(image.digest, index, "the name resolves to the index");
    assert_eq!(image.manifest_digest, amd.manifest_digest);
    assert_eq!(
        fs::read_to_string(svc.rootfs_layers(&image)[0].join("arch")).unwrap(),
        "amd64\n"
    );
    assert!(
        !svc.content().contains(&arm.layers[0].0.digest),
        "the arm64 layer is never fetched"
    );
}

#[tokio::test]
async fn tampered_blob_is_refused_and_leaves_nothing() {
    let reg = Registry::start();
    let built = busybox_image().build().unwrap();
    let reference = format!("{}/tampered:1", reg.addr);
    built
        .push(&Client::new(http_mirror(&reg.addr)), &reference)
        .await
        .unwrap();

    let layer = &built.layers[0].0.digest;
    let data = reg.blob_data(layer.hex());
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff; // same size, different content
    fs::write(&data, &bytes).unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirror(&reg.addr)).unwrap();
    let err = svc.pull(&reference, None).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("blob {layer} digest mismatch: got sha256:")),
        "{err}"
    );
    assert!(err.starts_with(&format!("pull {reference}")), "{err}");
    assert!(svc.list().unwrap().is_empty(), "no image record");
    assert!(
        !svc.content().contains(layer),
        "no blob under the tampered digest"
    );
    assert!(
        !svc.content().contains(&built.manifest_digest),
        "no manifest, so no half image"
    );
    assert_eq!(
        count(&root.path().join("content/ingest")),
        0,
        "no partial download left"
    );
    assert_eq!(count(&root.path().join("snapshots")), 0, "nothing unpacked");
    assert_eq!(
        count(&root.path().join("content/blobs/sha256")),
        0,
        "the already verified config blob is rolled back too"
    );
}

#[tokio::test]
async fn basic_auth_right_and_wrong_password() {
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    let addr = &reg.addr;
    let with_auth = format!(
        "mirrors:\n  \"{addr}\":\n    endpoint: [\"http://{addr}\"]\nconfigs:\n  \"{addr}\":\n    auth:\n      username: alice\n      password: s3cret\n"
    );
    let pusher = Client::new(RegistriesConfig::parse(&with_auth).unwrap());
    let reference = format!("{addr}/private/app:v1");
    busybox_image()
        .build()
        .unwrap()
        .push(&pusher, &reference)
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirror(addr)).unwrap();
    let err = svc.pull(&reference, None).await.unwrap_err().to_string();
    assert!(err.contains("unauthorized"), "{err}");

    let wrong = DockerConfig::parse(
        format!(r#"{{"auths":{{"{addr}":{{"username":"alice","password":"nope"}}}}}}"#).as_bytes(),
    )
    .unwrap();
    let err = svc
        .pull(&reference, Some(&wrong))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unauthorized"), "{err}");
    assert!(svc.list().unwrap().is_empty());

    // imagePullSecret form: base64 "auth" under a URL-style key.
    let right = DockerConfig::parse(
        format!(r#"{{"auths":{{"http://{addr}/v2/":{{"auth":"YWxpY2U6czNjcmV0"}}}}}}"#).as_bytes(),
    )
    .unwrap();
    let image = svc.pull(&reference, Some(&right)).await.unwrap();
    assert_eq!(image.name, reference);
}

#[tokio::test]
async fn plain_http_is_refused_unless_configured() {
    let reg = Registry::start();
    let reference = format!("{}/insecure:1", reg.addr);
    busybox_image()
        .build()
        .unwrap()
        .push(&Client::new(http_mirror(&reg.addr)), &reference)
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let err = svc.pull(&reference, None).await.unwrap_err().to_string();
    assert!(err.contains(&format!("https://{}/v2/", reg.addr)), "{err}");
    assert!(
        err.contains("registries.yaml"),
        "the error says how to allow it: {err}"
    );
    assert!(svc.list().unwrap().is_empty());
}

#[tokio::test]
async fn import_oci_and_docker_archives_and_export_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let built = busybox_image().build().unwrap();
    let oci = dir.path().join("oci.tar");
    built
        .write_oci_archive("example.com/tools/busybox:oci", &oci)
        .unwrap();
    let docker = dir.path().join("docker.tar");
    built
        .write_docker_archive("busybox:saved", &docker)
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let imported = svc.import(&oci).await.unwrap();
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].name, "example.com/tools/busybox:oci");
    assert_eq!(imported[0].manifest_digest, built.manifest_digest);

    let saved = svc.import(&docker).await.unwrap();
    assert_eq!(saved[0].name, "docker.io/library/busybox:saved");
    assert_eq!(saved[0].config_digest, built.config_desc.digest);
    // Same diff id, so the docker-save layer shares the OCI import's snapshot.
    assert_eq!(saved[0].layers[0].chain_id, imported[0].layers[0].chain_id);
    let lower = svc.rootfs_layers(&saved[0]);
    assert!(lower[0].join("bin/busybox").is_file());
    assert_eq!(
        svc.config(&saved[0]).unwrap().cmd,
        Some(vec!["echo hello".to_string()])
    );

    let exported = dir.path().join("export.tar");
    svc.export("busybox:saved", &exported).await.unwrap();
    let other = tempfile::tempdir().unwrap();
    let svc2 = ImageService::open(other.path(), RegistriesConfig::default()).unwrap();
    let back = svc2.import(&exported).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].name, "docker.io/library/busybox:saved");
    assert_eq!(back[0].manifest_digest, saved[0].manifest_digest);
    assert_eq!(back[0].layers, saved[0].layers);

    let bad = dir.path().join("junk.tar");
    fs::write(&bad, b"not a tar at all").unwrap();
    let err = svc2.import(&bad).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("import {}", bad.display())),
        "{err}"
    );
}

#[tokio::test]
async fn import_dir_imports_every_archive_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let built = busybox_image()
        .compression(Compression::None)
        .build()
        .unwrap();
    built
        .write_oci_archive("airgap/one:1", &dir.path().join("a.tar"))
        .unwrap();
    built
        .write_docker_archive("airgap/two:2", &dir.path().join("b.tar"))
        .unwrap();
    fs::write(dir.path().join("c.tar"), b"garbage").unwrap();
    fs::write(dir.path().join("README"), b"ignored").unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let results = svc.import_dir(dir.path()).await.unwrap();
    assert_eq!(results.len(), 3);
    assert!(results[0].1.is_ok() && results[1].1.is_ok());
    assert!(results[2].1.is_err());
    let names: Vec<_> = svc.list().unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["docker.io/airgap/one:1", "docker.io/airgap/two:2"]);
}

#[tokio::test]
async fn remove_and_prune_collect_only_unreferenced_content() {
    let dir = tempfile::tempdir().unwrap();
    let base = LayerBuilder::busybox(Path::new(BUSYBOX)).unwrap();
    let a = ImageBuilder::new()
        .layer(base.clone())
        .layer(LayerBuilder::new().file("a", "a", 0o644))
        .build()
        .unwrap();
    let b = ImageBuilder::new()
        .layer(base)
        .layer(LayerBuilder::new().file("b", "b", 0o644))
        .build()
        .unwrap();
    a.write_oci_archive("img/a:1", &dir.path().join("a.tar"))
        .unwrap();
    b.write_oci_archive("img/b:1", &dir.path().join("b.tar"))
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let ia = svc
        .import(&dir.path().join("a.tar"))
        .await
        .unwrap()
        .remove(0);
    let ib = svc
        .import(&dir.path().join("b.tar"))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        count(&root.path().join("snapshots")),
        3,
        "shared base + two tops"
    );

    let stray = svc.content().write_all(None, b"nobody uses me").unwrap();
    let report = svc.remove("img/a:1").await.unwrap();
    assert_eq!(report.snapshots, vec![ia.layers[1].chain_id.clone()]);
    assert!(
        report.blobs.contains(&ia.layers[1].digest) && report.blobs.contains(&ia.manifest_digest)
    );
    assert!(
        !report.blobs.contains(&ia.layers[0].digest),
        "shared base layer stays"
    );
    assert!(
        svc.content().contains(&stray),
        "remove leaves unrelated content"
    );
    assert!(svc.rootfs_layers(&ib).iter().all(|p| p.is_dir()));
    assert!(svc.get("img/a:1").is_err());

    let report = svc.prune().await.unwrap();
    assert_eq!(report.blobs, vec![stray]);
    assert!(report.snapshots.is_empty());
    svc.remove("docker.io/img/b:1").await.unwrap();
    assert_eq!(svc.prune().await.unwrap(), Default::default());
    assert_eq!(count(&root.path().join("content/blobs/sha256")), 0);
    assert_eq!(count(&root.path().join("snapshots")), 0);
}

#[tokio::test]
async fn unpack_whiteouts_opaque_dirs_links_modes_and_owners() {
    let lower = LayerBuilder::new()
        .dir("a", 0o755)
        .file("a/old", "old", 0o644)
        .dir("b", 0o755)
        .file("b/keep", "keep", 0o644)
        .file("gone", "gone", 0o644);
    let upper = LayerBuilder::new()
        .whiteout("gone")
        .dir("a", 0o755)
        .opaque("a")
        .file("a/new", "new", 0o644)
        .file("h1", "linked", 0o640)
        .hardlink("h2", "h1")
        .symlink("s", "b/keep")
        .file("suid", "x", 0o4755)
        .owned_by(1000, 2000)
        .xattr("user.rkube.test", b"kept")
        .xattr("trusted.rkube.test", b"also kept as root");
    let built = ImageBuilder::new()
        .layer(lower)
        .layer(upper)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    built
        .write_oci_archive("unpack/test:1", &dir.path().join("i.tar"))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let image = svc
        .import(&dir.path().join("i.tar"))
        .await
        .unwrap()
        .remove(0);
    let layers = svc.rootfs_layers(&image);
    let (top, bottom) = (&layers[0], &layers[1]);

    assert_eq!(fs::read_to_string(bottom.join("a/old")).unwrap(), "old");
    let wh = fs::symlink_metadata(top.join("gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    assert!(!top.join(".wh.gone").exists());
    assert_eq!(
        xattr(&top.join("a"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("a/.wh..wh..opq").exists());
    assert_eq!(
        fs::metadata(top.join("h1")).unwrap().ino(),
        fs::metadata(top.join("h2")).unwrap().ino()
    );
    assert_eq!(fs::read_link(top.join("s")).unwrap(), Path::new("b/keep"));
    let suid = fs::metadata(top.join("suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (1000, 2000));
    assert_eq!(
        xattr(&top.join("suid"), "user.rkube.test").as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        xattr(&top.join("suid"), "trusted.rkube.test").as_deref(),
        Some(&b"also kept as root"[..])
    );
    assert_eq!(fs::metadata(top.join("h1")).unwrap().mode() & 0o777, 0o640);

    // Stack the snapshots with overlayfs and check the merged view.
    let merged = dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let opts = format!("lowerdir={}:{}", top.display(), bottom.display());
    let status = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status();
    if matches!(status, Ok(s) if s.success()) {
        let names = |p: &Path| {
            let mut v: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            v.sort();
            v
        };
        let root_names = names(&merged);
        let a_names = names(&merged.join("a"));
        let _ = std::process::Command::new("umount").arg(&merged).status();
        assert!(!root_names.contains(&"gone".to_string()), "{root_names:?}");
        assert_eq!(a_names, ["new"], "opaque dir hides the lower layer's files");
    } else {
        eprintln!("overlay mount not available here; on-disk checks only");
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid NUL-terminated strings and a buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}
