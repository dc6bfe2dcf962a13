//! The three PATCH formats the API server accepts.
//!
//! Upstream counterparts: `k8s.io/apimachinery/pkg/util/strategicpatch`
//! (strategic merge patch), `github.com/evanphx/json-patch` (RFC 6902 JSON
//! patch and RFC 7386 merge patch), and the content-type switch in
//! `apiserver/pkg/endpoints/handlers/patch.go`. Server-side apply
//! (`application/apply-patch+yaml`) is recognised here but implemented
//! elsewhere: it needs managedFields, not just a document merge.

pub mod json;
pub mod merge;
pub mod strategic;

/// Removes `key` from an object without disturbing the order of the
/// others (serde_json's `remove` swaps entries when objects preserve
/// insertion order).
pub(crate) fn remove_key(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Option<serde_json::Value> {
    let value = map.get(key).cloned()?;
    map.retain(|k, _| k != key);
    Some(value)
}

/// Which patch format a request body is, by its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The media types in the order kube-apiserver lists them.
    pub const MEDIA_TYPES: [&'static str; 4] = [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];

    /// Recognises a Content-Type header value; parameters such as
    /// `; charset=utf-8` are ignored. `None` means 415.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            PatchType::Json => Self::MEDIA_TYPES[0],
            PatchType::Merge => Self::MEDIA_TYPES[1],
            PatchType::Strategic => Self::MEDIA_TYPES[2],
            PatchType::Apply => Self::MEDIA_TYPES[3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PatchType;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::Strategic)
        );
        assert_eq!(
            PatchType::from_content_type("Application/JSON-Patch+JSON"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            Some(PatchType::Apply)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
        assert_eq!(PatchType::from_content_type(""), None);
        for t in [
            PatchType::Json,
            PatchType::Merge,
            PatchType::Strategic,
            PatchType::Apply,
        ] {
            assert_eq!(PatchType::from_content_type(t.media_type()), Some(t));
        }
    }
}
