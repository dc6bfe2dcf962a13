//! Image pulls as the kubelet decides them: imagePullPolicy, credentials
//! from imagePullSecrets, and the image reference and id reported in
//! container statuses.
//!
//! Upstream counterpart: `pkg/kubelet/images/image_manager.go` (the pull
//! policy) and the CRI image service the kubelet calls.

use std::sync::Arc;

use async_trait::async_trait;
use rkube_containers::image::{DockerConfig, ImageService};

/// What the kubelet reports about an image it ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The normalised reference (`docker.io/library/busybox:1.36`).
    pub name: String,
    /// `repo@sha256:...`, what containerStatuses[].imageID holds.
    pub id: String,
    pub size: u64,
}

/// The node's image store, narrowed to what pod workers need.
#[async_trait]
pub trait Images: Send + Sync {
    /// The image if it is present on the node.
    fn present(&self, image: &str) -> Option<ImageInfo>;
    async fn pull(&self, image: &str, auth: Option<&DockerConfig>) -> Result<ImageInfo, String>;
    /// Every image on the node (for node.status.images).
    fn list(&self) -> Vec<ImageInfo>;
    /// Remove an image and the content no other image shares (image
    /// garbage collection).
    async fn remove(&self, image: &str) -> Result<(), String> {
        Err(format!(
            "cannot remove {image}: this image store keeps its images"
        ))
    }
}

fn info(img: &rkube_containers::image::Image) -> ImageInfo {
    let repo = img
        .name
        .rsplit_once('@')
        .map(|(r, _)| r)
        .unwrap_or(&img.name);
    // Strip the tag (not a port: the tag follows the last slash).
    let repo = match repo.rfind(':') {
        Some(i) if !repo[i..].contains('/') => &repo[..i],
        _ => repo,
    };
    ImageInfo {
        name: img.name.clone(),
        id: format!("{repo}@{}", img.digest),
        size: img.size,
    }
}

/// The real store.
pub struct LocalImages(pub Arc<ImageService>);

#[async_trait]
impl Images for LocalImages {
    fn present(&self, image: &str) -> Option<ImageInfo> {
        self.0.get(image).ok().map(|i| info(&i))
    }

    async fn pull(&self, image: &str, auth: Option<&DockerConfig>) -> Result<ImageInfo, String> {
        // The pull future is not provably Send (higher-ranked borrows
        // inside the image service), so it is driven on a blocking thread
        // of the same runtime rather than as a task.
        let (svc, image, auth) = (self.0.clone(), image.to_string(), auth.cloned());
        let handle = tokio::runtime::Handle::current();
        let job = tokio::task::spawn_blocking(move || {
            handle
                .block_on(svc.pull(&image, auth.as_ref()))
                .map(|i| info(&i))
                .map_err(|e| error_chain(&e))
        });
        job.await.map_err(|e| e.to_string())?
    }

    fn list(&self) -> Vec<ImageInfo> {
        self.0.list().unwrap_or_default().iter().map(info).collect()
    }

    async fn remove(&self, image: &str) -> Result<(), String> {
        // Driven on a blocking thread, as pulls are (the store's futures
        // are not provably Send).
        let (svc, image) = (self.0.clone(), image.to_string());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle
                .block_on(svc.remove(&image))
                .map(|_| ())
                .map_err(|e| error_chain(&e))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// An error with its sources, as one line (what the Failed event shows).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Prefix of a pod worker's back-off key for a container's image pulls
/// (apart from its restart back-off, keyed by the bare name).
pub const BACKOFF_KEY: &str = "image-pull:";

/// Whether a waiting reason is an image one (told as "Error: <reason>").
pub fn is_image_reason(reason: &str) -> bool {
    matches!(
        reason,
        "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" | "InvalidImageName"
    )
}

/// A failed pull as the status and the Failed event tell it, in
/// containerd's words as the kubelet relays them.
pub fn pull_error(image: &str, error: &str) -> String {
    format!("failed to pull and unpack image \"{image}\": {error}")
}

/// The waiting message while pulls back off: the last error kept.
pub fn backoff_message(image: &str, last_error: &str) -> String {
    if last_error.is_empty() {
        format!("Back-off pulling image \"{image}\"")
    } else {
        format!("Back-off pulling image \"{image}\": ErrImagePull: {last_error}")
    }
}

/// The pull error inside a waiting message (ErrImagePull's own, or the
/// one a back-off message carries).
pub fn last_pull_error(message: &str) -> &str {
    match message.split_once(": ErrImagePull: ") {
        Some((_, e)) => e,
        None if message.starts_with("Back-off pulling image") => "",
        None => message,
    }
}

/// Whether to pull, given the policy and whether the image is present.
/// An empty policy defaults as the API server does: `Always` for
/// `:latest` or untagged images, `IfNotPresent` otherwise.
pub fn should_pull(image: &str, policy: Option<&str>, present: bool) -> Result<bool, String> {
    let policy = match policy.filter(|p| !p.is_empty()) {
        Some(p) => p.to_string(),
        None if is_latest(image) => "Always".into(),
        None => "IfNotPresent".into(),
    };
    match policy.as_str() {
        "Always" => Ok(true),
        "IfNotPresent" => Ok(!present),
        "Never" if present => Ok(false),
        "Never" => Err(format!(
            "Container image \"{image}\" is not present with pull policy of Never"
        )),
        other => Err(format!("unknown imagePullPolicy {other:?}")),
    }
}

fn is_latest(image: &str) -> bool {
    if image.contains('@') {
        return false;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag == "latest",
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_messages_keep_the_last_error() {
        let err = pull_error("r/x:1", "401 Unauthorized");
        assert_eq!(
            err,
            "failed to pull and unpack image \"r/x:1\": 401 Unauthorized"
        );
        let first = backoff_message("r/x:1", last_pull_error(&err));
        assert_eq!(
            first,
            format!("Back-off pulling image \"r/x:1\": ErrImagePull: {err}")
        );
        // Backing off again keeps the same error, not a nested one.
        assert_eq!(backoff_message("r/x:1", last_pull_error(&first)), first);
        assert_eq!(
            backoff_message("r/x:1", last_pull_error("Back-off pulling image \"r/x:1\"")),
            "Back-off pulling image \"r/x:1\""
        );
        assert!(is_image_reason("ImagePullBackOff") && !is_image_reason("CrashLoopBackOff"));
    }

    #[test]
    fn pull_policy() {
        assert!(should_pull("busybox", None, true).unwrap());
        assert!(should_pull("busybox:latest", Some(""), true).unwrap());
        assert!(!should_pull("busybox:1.36", None, true).unwrap());
        assert!(should_pull("busybox:1.36", None, false).unwrap());
        assert!(!should_pull("localhost:5000/x:1", None, true).unwrap());
        assert!(should_pull("localhost:5000/x", None, true).unwrap());
        assert!(should_pull("x:1", Some("Always"), true).unwrap());
        assert!(should_pull("x:1", Some("Never"), false).is_err());
        assert!(!should_pull("x:1", Some("Never"), true).unwrap());
    }
}
