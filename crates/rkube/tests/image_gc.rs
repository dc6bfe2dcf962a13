//! Image garbage collection on a real agent, as root: with the high
//! threshold below the disk's real usage, an image no container uses is
//! removed from the node's store (and from node.status.images), while the
//! image a running pod uses stays; under disk pressure the eviction
//! manager removes unused images before it evicts pods; flags are checked
//! as upstream's.

mod support;

use std::time::Duration;

use support::images::{busybox_image, BUSYBOX};
use support::node::LocalNode;

const SPARE: &str = "example.com/test/spare:1";

/// A second image, with a layer of its own, put where the agent imports
/// archives at start: no pod uses it.
fn write_spare(data: &std::path::Path) {
    busybox_image()
        .layer(rkube_containers::image::build::LayerBuilder::new().file("/spare", "spare", 0o644))
        .build()
        .unwrap()
        .write_oci_archive(SPARE, &data.join("agent/images/spare.tar"))
        .unwrap();
}

fn images(c: &LocalNode) -> String {
    let out = c.ctr(&["images", "ls"]).expect("rkube ctr images ls");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn unused_images_are_collected_and_used_ones_kept() {
    let mut c = LocalNode::new("gc-node", write_spare);
    // Any real disk is more than 1% full: collect down to 0%, i.e. every
    // image no container uses once the agent has known it for 15 s (the
    // minimum age spares the busybox image until the pod's container
    // holds it, as upstream's spares a just-pulled image).
    c.image_gc_high_threshold = "1".into();
    c.agent_args = [
        "--image-gc-low-threshold",
        "0",
        "--minimum-image-ttl-duration",
        "15s",
        "--image-gc-period",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    // The pod is there when the agent starts, so it holds its image well
    // within the minimum age.
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: keeper\nspec:\n  nodeName: gc-node\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    imagePullPolicy: Never\n    command: [\"sleep\", \"3600\"]\n"
    ));
    c.start_agent();
    c.wait_node_ready();
    c.wait_running("keeper");

    let gone = support::eventually(Duration::from_secs(60), || {
        !images(&c).contains("example.com/test/spare")
    });
    assert!(
        gone,
        "the unused image is still there:\n{}\n{}",
        images(&c),
        c.agent_logs()
    );
    assert!(
        images(&c).contains("example.com/test/busybox"),
        "the image a running container uses must stay:\n{}",
        images(&c)
    );
    // node.status.images follows the store.
    let reported = support::eventually(Duration::from_secs(90), || {
        !c.get(&["node", "gc-node"], "{.status.images[*].names}")
            .contains("spare")
    });
    assert!(reported, "node.status.images still lists the spare image");
    assert_eq!(
        c.get(
            &["pod", "keeper"],
            "{.status.containerStatuses[0].restartCount}"
        ),
        "0"
    );
}

#[test]
fn disk_pressure_reclaims_unused_images_before_evicting() {
    let mut c = LocalNode::new("gc-pressure", write_spare);
    // Always met; the periodic collection stays off (threshold 100).
    c.eviction_hard = "imagefs.inodesFree<100%".into();
    c.agent_args = ["--minimum-image-ttl-duration", "0s"]
        .map(String::from)
        .to_vec();
    c.start_agent();
    c.wait_node_ready();
    let gone = support::eventually(Duration::from_secs(60), || {
        let list = images(&c);
        !list.contains("example.com/test/spare") && !list.contains("example.com/test/busybox")
    });
    assert!(
        gone,
        "unused images kept under disk pressure:\n{}",
        images(&c)
    );
    assert!(
        c.agent_logs()
            .contains("reclaimed unused images instead of evicting"),
        "{}",
        c.agent_logs()
    );
}

#[test]
fn bad_thresholds_are_refused() {
    for (args, words) in [
        (
            &[
                "--image-gc-high-threshold",
                "70",
                "--image-gc-low-threshold",
                "80",
            ][..],
            "LowThresholdPercent 80 can not be higher than HighThresholdPercent 70",
        ),
        (
            &["--image-gc-high-threshold", "101"][..],
            "not a percentage",
        ),
        (
            &["--minimum-image-ttl-duration", "2 minutes"][..],
            "invalid duration",
        ),
    ] {
        let err = support::agent_refuses(args);
        assert!(err.contains(words), "{args:?}: {err}");
    }
}
