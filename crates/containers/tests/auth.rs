//! The bearer-token flow (as Docker Hub does it) and mirror fallback,
//! against a real docker-registry behind a loopback token proxy.

mod support;

use std::path::Path;

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::client::Client;
use rkube_containers::image::{DockerConfig, ImageService, RegistriesConfig};
use support::registry::Registry;
use support::token_proxy::TokenProxy;

fn http_mirrors(registry: &str, endpoints: &[&str]) -> RegistriesConfig {
    let list: Vec<String> = endpoints
        .iter()
        .map(|e| format!("\"http://{e}\""))
        .collect();
    RegistriesConfig::parse(&format!(
        "mirrors:\n  \"{registry}\":\n    endpoint: [{}]\n",
        list.join(", ")
    ))
    .unwrap()
}

/// Pushes a busybox image straight to the registry under `repo:tag`.
async fn seed(reg: &Registry, repo_tag: &str) {
    let image = ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
        .build()
        .unwrap();
    let client = Client::new(http_mirrors(&reg.addr, &[&reg.addr]));
    image
        .push(&client, &format!("{}/{repo_tag}", reg.addr))
        .await
        .unwrap();
}

#[tokio::test]
async fn anonymous_bearer_token_is_fetched_once_and_reused() {
    let reg = Registry::start();
    seed(&reg, "bearer/app:1").await;
    let proxy = TokenProxy::start(&reg.addr, None).await;

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirrors(&proxy.addr, &[&proxy.addr])).unwrap();
    let image = svc
        .pull(&format!("{}/bearer/app:1", proxy.addr), None)
        .await
        .unwrap();
    assert_eq!(image.layers.len(), 1);
    assert!(svc.rootfs_layers(&image)[0].join("bin/busybox").is_file());
    // One token for the whole pull (manifest, config and layer requests).
    assert_eq!(proxy.token_scopes(), ["repository:bearer/app:pull"]);
}

#[tokio::test]
async fn bearer_token_endpoint_with_basic_credentials() {
    let reg = Registry::start();
    seed(&reg, "private/app:1").await;
    let proxy = TokenProxy::start(&reg.addr, Some(("bob", "hunter2"))).await;
    let reference = format!("{}/private/app:1", proxy.addr);

    let root = tempfile::tempdir().unwrap();
    let svc = ImageService::open(root.path(), http_mirrors(&proxy.addr, &[&proxy.addr])).unwrap();
    let err = svc.pull(&reference, None).await.unwrap_err().to_string();
    assert!(err.contains("unauthorized"), "{err}");
    assert!(svc.list().unwrap().is_empty());

    let secret = format!(
        r#"{{"auths":{{"{}":{{"username":"bob","password":"hunter2"}}}}}}"#,
        proxy.addr
    );
    let secret = DockerConfig::parse(secret.as_bytes()).unwrap();
    svc.pull(&reference, Some(&secret)).await.unwrap();
    assert_eq!(proxy.token_scopes(), ["repository:private/app:pull"]);
}

#[tokio::test]
async fn unreachable_mirror_falls_back_to_the_next_endpoint() {
    let reg = Registry::start();
    seed(&reg, "mirrored/app:1").await;
    // A port nobody listens on: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();

    let root = tempfile::tempdir().unwrap();
    // The image is named by the dead host (so no default endpoint outside
    // loopback is added); only its second mirror can serve it.
    let reference = format!("{dead}/mirrored/app:1");
    let svc = ImageService::open(root.path(), http_mirrors(&dead, &[&dead, &reg.addr])).unwrap();
    let image = svc.pull(&reference, None).await.unwrap();
    assert_eq!(image.name, reference);

    let other = tempfile::tempdir().unwrap();
    let none = ImageService::open(other.path(), http_mirrors(&dead, &[&dead])).unwrap();
    let err = none.pull(&reference, None).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("pull {reference}")) && err.contains(&format!("http://{dead}/v2/")),
        "{err}"
    );
}

#[tokio::test]
async fn https_registry_needs_its_ca_or_insecure_skip_verify() {
    let reg = Registry::start_tls();
    let addr = &reg.addr;
    let ca = reg.ca_file();
    let with_ca = RegistriesConfig::parse(&format!(
        "configs:\n  \"{addr}\":\n    tls:\n      ca_file: {}\n",
        ca.display()
    ))
    .unwrap();
    let image = ImageBuilder::new()
        .layer(LayerBuilder::new().file("hello", "tls\n", 0o644))
        .build()
        .unwrap();
    let reference = format!("{addr}/secure/app:1");
    image
        .push(&Client::new(with_ca.clone()), &reference)
        .await
        .unwrap();

    let root = tempfile::tempdir().unwrap();
    let untrusted = ImageService::open(root.path(), RegistriesConfig::default()).unwrap();
    let err = untrusted
        .pull(&reference, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("https://{addr}/v2/")) && err.to_lowercase().contains("certificate"),
        "{err}"
    );

    let trusted = ImageService::open(root.path(), with_ca).unwrap();
    let pulled = trusted.pull(&reference, None).await.unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);

    let other = tempfile::tempdir().unwrap();
    let insecure = format!("configs:\n  \"{addr}\":\n    tls:\n      insecure_skip_verify: true\n");
    let skip =
        ImageService::open(other.path(), RegistriesConfig::parse(&insecure).unwrap()).unwrap();
    assert_eq!(
        skip.pull(&reference, None).await.unwrap().manifest_digest,
        image.manifest_digest
    );
}
