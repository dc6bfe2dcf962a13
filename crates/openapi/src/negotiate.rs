//! Content negotiation for the documents: which form of a document an
//! `Accept` header asks for, and the reply kube-apiserver gives.
//!
//! Upstream counterpart: the `goautoneg` matching in kube-openapi's
//! pkg/handler (v2) and pkg/handler3 (v3), and the aggregated-discovery
//! negotiation of k8s.io/apiserver/pkg/endpoints/discovery/aggregated
//! (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`).
//! Pure functions, so the HTTP layer only copies the answer into headers.

use crate::discovery::{AGGREGATED_CONTENT_TYPE, AGGREGATED_V2BETA1_CONTENT_TYPE};
use crate::{V2_PROTOBUF_ACCEPT, V2_PROTOBUF_CONTENT_TYPE};
use bytes::Bytes;

/// One media range of an Accept header.
#[derive(Debug, PartialEq)]
struct Clause<'a> {
    /// `type/subtype`, lower-cased.
    media: String,
    params: Vec<(&'a str, &'a str)>,
    quality: f32,
}

impl Clause<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn is_any_json(&self) -> bool {
        matches!(
            self.media.as_str(),
            "application/json" | "application/*" | "*/*"
        )
    }
}

/// The clauses of `accept` by descending quality (ties keep the client's
/// order), without the ones the client refuses (`q=0`). An empty header
/// means `*/*`, as upstream treats it.
fn clauses(accept: &str) -> Vec<Clause<'_>> {
    let accept = if accept.trim().is_empty() {
        "*/*"
    } else {
        accept
    };
    let mut out: Vec<Clause<'_>> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let media = parts.next()?.trim().to_ascii_lowercase();
            if media.is_empty() {
                return None;
            }
            let mut params = Vec::new();
            let mut quality = 1.0;
            for param in parts {
                let (key, value) = param.split_once('=')?;
                let (key, value) = (key.trim(), value.trim().trim_matches('"'));
                if key.eq_ignore_ascii_case("q") {
                    quality = value.parse().unwrap_or(0.0);
                } else {
                    params.push((key, value));
                }
            }
            Some(Clause {
                media,
                params,
                quality,
            })
        })
        .filter(|c| c.quality > 0.0)
        .collect();
    out.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    out
}

/// What to answer on `/api` or `/apis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// [`crate::aggregated`] with `Content-Type: AGGREGATED_CONTENT_TYPE`.
    AggregatedV2,
    /// [`crate::aggregated_v2beta1`] with `AGGREGATED_V2BETA1_CONTENT_TYPE`.
    AggregatedV2Beta1,
    /// The legacy `APIVersions` / `APIGroupList`, as `application/json`.
    Legacy,
    /// 406: nothing the server speaks was asked for.
    NotAcceptable,
}

impl Discovery {
    /// The content type and body of an aggregated answer (`legacy`: for
    /// `/api`), or `None` for [`Discovery::Legacy`] and
    /// [`Discovery::NotAcceptable`].
    pub fn aggregated_body(self, legacy: bool) -> Option<(&'static str, Bytes)> {
        match self {
            Discovery::AggregatedV2 => Some((AGGREGATED_CONTENT_TYPE, crate::aggregated(legacy))),
            Discovery::AggregatedV2Beta1 => Some((
                AGGREGATED_V2BETA1_CONTENT_TYPE,
                crate::aggregated_v2beta1(legacy),
            )),
            Discovery::Legacy | Discovery::NotAcceptable => None,
        }
    }
}

/// The discovery form an Accept header asks for first.
pub fn discovery(accept: &str) -> Discovery {
    for clause in clauses(accept) {
        let aggregated = clause.media == "application/json"
            && clause.param("g") == Some("apidiscovery.k8s.io")
            && clause.param("as") == Some("APIGroupDiscoveryList");
        if aggregated {
            match clause.param("v") {
                Some("v2") => return Discovery::AggregatedV2,
                Some("v2beta1") => return Discovery::AggregatedV2Beta1,
                _ => continue,
            }
        }
        if clause.is_any_json() && clause.param("as").is_none() {
            return Discovery::Legacy;
        }
    }
    Discovery::NotAcceptable
}

/// The `/openapi/v2` answer for an Accept header: `(Content-Type, body)`,
/// or `None` for 406. Serve it with `ETag: "<v2_hash()>"` (the same for
/// both encodings), `Vary: Accept`, and 304 on a matching `If-None-Match`.
pub fn v2(accept: &str) -> Option<(&'static str, Bytes)> {
    for clause in clauses(accept) {
        let media = clause.media.as_str();
        if media == V2_PROTOBUF_ACCEPT || media == V2_PROTOBUF_CONTENT_TYPE {
            return Some((V2_PROTOBUF_CONTENT_TYPE, crate::v2_protobuf()));
        }
        if clause.is_any_json() {
            return Some(("application/json", crate::v2_json()));
        }
    }
    None
}

/// The answer to `GET /openapi/v3/<path>[?hash=<hash>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V3Reply {
    /// 200, `Content-Type: application/json`, `ETag: "<etag>"`,
    /// `Vary: Accept`; when `immutable` (the URL named the current hash)
    /// also `Cache-Control: public, immutable` and an `Expires` a year ahead.
    Document {
        body: Bytes,
        etag: &'static str,
        immutable: bool,
    },
    /// 301 to this location: the hash asked for is not the current one.
    Redirect(String),
    /// 404: no such group/version.
    NotFound,
    /// 406: only JSON is served (kubectl asks for nothing else).
    NotAcceptable,
}

/// Decides the reply to a v3 document request. `path` is what follows
/// `/openapi/v3/` (`api/v1`, `apis/apps/v1`); `hash` the `hash` query
/// parameter, if any.
pub fn v3(path: &str, hash: Option<&str>, accept: &str) -> V3Reply {
    let (Some(body), Some(etag)) = (crate::v3_document(path), crate::v3_hash(path)) else {
        return V3Reply::NotFound;
    };
    if !clauses(accept).iter().any(Clause::is_any_json) {
        return V3Reply::NotAcceptable;
    }
    match hash {
        Some(asked) if !asked.is_empty() && asked != etag => {
            V3Reply::Redirect(format!("/openapi/v3/{path}?hash={etag}"))
        }
        Some(asked) => V3Reply::Document {
            body,
            etag,
            immutable: !asked.is_empty(),
        },
        None => V3Reply::Document {
            body,
            etag,
            immutable: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_132: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    const KUBECTL_129: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    #[test]
    fn discovery_follows_the_clients_preference() {
        assert_eq!(discovery(KUBECTL_132), Discovery::AggregatedV2);
        assert_eq!(discovery(KUBECTL_129), Discovery::AggregatedV2Beta1);
        assert_eq!(discovery("application/json, */*"), Discovery::Legacy);
        assert_eq!(discovery(""), Discovery::Legacy);
        assert_eq!(discovery("application/xml"), Discovery::NotAcceptable);
        // An unknown aggregated version is skipped, not mistaken for legacy.
        assert_eq!(
            discovery("application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList"),
            Discovery::NotAcceptable
        );
        // Quality ranks before order.
        assert_eq!(
            discovery("application/json;q=0.5,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"),
            Discovery::AggregatedV2
        );
        let (content_type, body) = Discovery::AggregatedV2.aggregated_body(true).unwrap();
        assert_eq!(content_type, AGGREGATED_CONTENT_TYPE);
        assert_eq!(body, crate::aggregated(true));
        assert!(Discovery::Legacy.aggregated_body(false).is_none());
    }

    #[test]
    fn v2_serves_protobuf_under_the_dotted_type() {
        let (content_type, body) = v2(V2_PROTOBUF_ACCEPT).unwrap();
        assert_eq!(content_type, V2_PROTOBUF_CONTENT_TYPE);
        assert!(
            !content_type.contains('@'),
            "Go cannot parse '@' in a media type"
        );
        assert_eq!(body, crate::v2_protobuf());
        let (content_type, body) = v2("application/json, */*").unwrap();
        assert_eq!(content_type, "application/json");
        assert_eq!(body, crate::v2_json());
        assert_eq!(v2("").map(|(t, _)| t), Some("application/json"));
        assert!(v2("text/html").is_none());
        assert!(v2(&format!("{V2_PROTOBUF_ACCEPT};q=0")).is_none());
    }

    #[test]
    fn v3_replies_like_kube_openapi() {
        let hash = crate::v3_hash("apis/apps/v1").unwrap();
        match v3("apis/apps/v1", Some(hash), "application/json") {
            V3Reply::Document {
                etag, immutable, ..
            } => {
                assert_eq!(etag, hash);
                assert!(immutable);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            v3("apis/apps/v1", None, "*/*"),
            V3Reply::Document {
                immutable: false,
                ..
            }
        ));
        assert_eq!(
            v3("apis/apps/v1", Some("STALE"), "application/json"),
            V3Reply::Redirect(format!("/openapi/v3/apis/apps/v1?hash={hash}"))
        );
        assert_eq!(
            v3("apis/nope/v1", None, "application/json"),
            V3Reply::NotFound
        );
        assert_eq!(
            v3(
                "api/v1",
                None,
                "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
            ),
            V3Reply::NotAcceptable
        );
    }
}
