//! The test image: Debian's busybox-static as a one-layer OCI image, built
//! by the project's own image builder and dropped where an agent imports
//! archives at start (`<data-dir>/agent/images`), so pods run without a
//! registry (the air-gapped path).

use std::path::Path;

use rkube_containers::image::build::{ImageBuilder, LayerBuilder};
use rkube_containers::image::RunConfig;

/// The busybox image's reference; pods use it with imagePullPolicy Never.
pub const BUSYBOX: &str = "example.com/test/busybox:1";

/// The busybox image's builder (one busybox-static layer, `sh` with
/// `PATH=/bin`), for tests that add layers or push it elsewhere.
pub fn busybox_image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(LayerBuilder::busybox(Path::new("/bin/busybox")).unwrap())
        .config(RunConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        })
}

/// Writes the busybox image into the agent images directory under `data`
/// (an agent's `--data-dir`).
pub fn write_busybox(data: &Path) {
    let dir = data.join("agent/images");
    std::fs::create_dir_all(&dir).unwrap();
    busybox_image()
        .build()
        .unwrap()
        .write_oci_archive(BUSYBOX, &dir.join("busybox.tar"))
        .unwrap();
}
