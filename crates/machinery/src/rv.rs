//! `resourceVersion` parsing and the list `continue` token.
//!
//! Upstream counterparts: `APIObjectVersioner.ParseResourceVersion` and
//! `storage.EncodeContinue`/`DecodeContinue` in `k8s.io/apiserver/pkg/storage`,
//! and `ValidateListOptions` in `apimachinery/pkg/apis/meta/internalversion`.
//!
//! A resourceVersion is the decimal store revision. On reads, two strings are
//! special (see [`ReadVersion`]): `""` asks for the most recent state (a
//! quorum read) and `"0"` for any state the server has (typically its
//! cache). The continue token is what kube-apiserver sends: unpadded
//! URL-safe base64 of `{"v":"meta.k8s.io/v1","rv":N,"start":"<key suffix>"}`,
//! so clients that inspect or reuse tokens see the same thing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::field::{FieldError, FieldPath};
use crate::status::{GroupKind, StatusError};

/// Reads with this resourceVersion want the latest state.
pub const RV_MOST_RECENT: &str = "";
/// Reads with this resourceVersion accept any (possibly cached) state.
pub const RV_ANY: &str = "0";

/// The only continue-token version upstream has ever emitted.
const CONTINUE_TOKEN_VERSION: &str = "meta.k8s.io/v1";

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// Not a non-negative decimal integer. Displays as the field error
    /// upstream reports (`resourceVersion: Invalid value: "x": ...`).
    #[error("{0}")]
    InvalidResourceVersion(FieldError),
    /// A continue token that cannot be used; the message is upstream's
    /// (`continue key is not valid: ...`) and meant for a 400 BadRequest.
    #[error("continue key is not valid{0}")]
    InvalidContinue(String),
    /// Encoding a token for a key outside the listed prefix (a caller bug).
    #[error("unable to encode next field: the key and key prefix do not match")]
    KeyOutsidePrefix,
}

/// What a read asked for with its `resourceVersion` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadVersion {
    /// `""`: the most recent state (quorum read).
    MostRecent,
    /// `"0"`: any state the server has.
    Any,
    /// A specific revision (exact or not-older-than, per
    /// `resourceVersionMatch`).
    At(i64),
}

/// Parses an object's or a request's resourceVersion: `""` and `"0"` give
/// 0, anything else must be a decimal integer that fits an `i64`.
pub fn parse(rv: &str) -> Result<i64, Error> {
    if rv.is_empty() {
        return Ok(0);
    }
    // Like Go's ParseUint: ASCII digits only, no sign, no spaces.
    let invalid = |why: &str| {
        Error::InvalidResourceVersion(FieldError::invalid(
            &FieldPath::new("resourceVersion"),
            rv,
            format!(
                "strconv.ParseUint: parsing {}: {why}",
                crate::quote::go_quote(rv)
            ),
        ))
    };
    if !rv.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("invalid syntax"));
    }
    rv.parse::<i64>().map_err(|_| invalid("value out of range"))
}

/// Parses the `resourceVersion` of a read into its meaning.
pub fn parse_read(rv: &str) -> Result<ReadVersion, Error> {
    match rv {
        RV_MOST_RECENT => Ok(ReadVersion::MostRecent),
        RV_ANY => Ok(ReadVersion::Any),
        _ => parse(rv).map(ReadVersion::At),
    }
}

/// Renders a revision as a resourceVersion string.
pub fn format(rv: i64) -> String {
    rv.to_string()
}

/// `resourceVersionMatch` values.
pub const MATCH_EXACT: &str = "Exact";
pub const MATCH_NOT_OLDER_THAN: &str = "NotOlderThan";

/// The resourceVersion-related parameters of a LIST or WATCH request, as
/// given in the query string (absent = empty / `None`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ListParams<'a> {
    pub watch: bool,
    pub resource_version: &'a str,
    pub resource_version_match: &'a str,
    pub continue_token: &'a str,
    pub send_initial_events: Option<bool>,
    /// Whether the server offers watch-list (`sendInitialEvents`).
    pub watch_list_enabled: bool,
}

/// Checks how resourceVersion, resourceVersionMatch, continue and
/// sendInitialEvents combine (upstream `ValidateListOptions`). A non-empty
/// result is answered with [`list_options_invalid`].
pub fn validate_list_params(p: &ListParams<'_>) -> Vec<FieldError> {
    let path = FieldPath::new("resourceVersionMatch");
    let m = p.resource_version_match;
    let mut errs = Vec::new();
    if p.watch {
        if p.send_initial_events.is_some() {
            if m != MATCH_NOT_OLDER_THAN {
                errs.push(FieldError::forbidden(
                    &path,
                    format!("sendInitialEvents requires setting resourceVersionMatch to {MATCH_NOT_OLDER_THAN}"),
                ));
            }
            if !p.watch_list_enabled {
                errs.push(FieldError::forbidden(
                    &FieldPath::new("sendInitialEvents"),
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                ));
            }
        }
        if !m.is_empty() {
            if p.send_initial_events.is_none() {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != MATCH_NOT_OLDER_THAN {
                errs.push(FieldError::not_supported(&path, m, &[MATCH_NOT_OLDER_THAN]));
            }
            if !p.continue_token.is_empty() {
                errs.push(FieldError::forbidden(
                    &path,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
        return errs;
    }
    if !m.is_empty() {
        if p.resource_version.is_empty() {
            errs.push(FieldError::forbidden(
                &path,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if !p.continue_token.is_empty() {
            errs.push(FieldError::forbidden(
                &path,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m != MATCH_EXACT && m != MATCH_NOT_OLDER_THAN {
            errs.push(FieldError::not_supported(
                &path,
                m,
                &[MATCH_EXACT, MATCH_NOT_OLDER_THAN, ""],
            ));
        }
        if m == MATCH_EXACT && p.resource_version == RV_ANY {
            errs.push(FieldError::forbidden(
                &path,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if p.send_initial_events.is_some() {
        errs.push(FieldError::forbidden(
            &FieldPath::new("sendInitialEvents"),
            "sendInitialEvents is forbidden for list",
        ));
    }
    errs
}

/// The 422 kube-apiserver answers for bad list options:
/// `ListOptions.meta.k8s.io "" is invalid: ...`.
pub fn list_options_invalid(errors: &[FieldError]) -> StatusError {
    StatusError::invalid(&GroupKind::new("meta.k8s.io", "ListOptions"), "", errors)
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    #[serde(rename = "v", default)]
    version: String,
    #[serde(rename = "rv", default)]
    resource_version: i64,
    #[serde(rename = "start", default)]
    start: String,
}

/// Encodes where the next page of a list starts: `next_key` (the first key
/// not yet returned) must lie under `prefix`; the token stores the part
/// after the prefix, plus the revision the list is pinned to.
pub fn encode_continue(next_key: &str, prefix: &str, rv: i64) -> Result<String, Error> {
    let start = next_key
        .strip_prefix(prefix)
        .ok_or(Error::KeyOutsidePrefix)?;
    let token = ContinueToken {
        version: CONTINUE_TOKEN_VERSION.to_owned(),
        resource_version: rv,
        start: start.to_owned(),
    };
    // A struct of two strings and an integer always serializes.
    let json = serde_json::to_vec(&token).unwrap_or_default();
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// Decodes a continue token for a list under `prefix`, returning the full
/// key to resume from and the revision to read at. Tokens whose start key
/// would climb out of the prefix (`../`) are refused.
pub fn decode_continue(token: &str, prefix: &str) -> Result<(String, i64), Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| Error::InvalidContinue(format!(": {e}")))?;
    let c: ContinueToken =
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidContinue(format!(": {e}")))?;
    if c.version != CONTINUE_TOKEN_VERSION {
        return Err(Error::InvalidContinue(format!(
            ": server does not recognize this encoded version {}",
            c.version
        )));
    }
    if c.resource_version == 0 {
        return Err(Error::InvalidContinue(
            ": incorrect encoded start resourceVersion (version meta.k8s.io/v1)".to_owned(),
        ));
    }
    if c.start.is_empty() {
        return Err(Error::InvalidContinue(
            ": encoded start key empty (version meta.k8s.io/v1)".to_owned(),
        ));
    }
    let key = if c.start.starts_with('/') {
        c.start.clone()
    } else {
        format!("/{}", c.start)
    };
    // The cleaned path must equal the key: no `.`/`..` segments, no `//`,
    // no trailing slash — so the resumed range stays inside the prefix.
    if clean_path(&key) != key {
        return Err(Error::InvalidContinue(format!(": {}", c.start)));
    }
    Ok((format!("{prefix}{}", &key[1..]), c.resource_version))
}

/// Lexical path cleaning of an absolute path (Go's `path.Clean`).
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_resource_versions() {
        assert_eq!(parse("").unwrap(), 0);
        assert_eq!(parse("0").unwrap(), 0);
        assert_eq!(parse("12345").unwrap(), 12345);
        assert_eq!(
            parse("abc").unwrap_err().to_string(),
            r#"resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax"#
        );
        for bad in ["-1", "+1", " 1", "1.0", "0x10"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("99999999999999999999")
            .unwrap_err()
            .to_string()
            .ends_with("value out of range"));
        assert_eq!(format(42), "42");
    }

    #[test]
    fn read_semantics() {
        assert_eq!(parse_read("").unwrap(), ReadVersion::MostRecent);
        assert_eq!(parse_read("0").unwrap(), ReadVersion::Any);
        assert_eq!(parse_read("7").unwrap(), ReadVersion::At(7));
        assert!(parse_read("x").is_err());
    }

    fn list(rv: &'static str, m: &'static str, cont: &'static str) -> ListParams<'static> {
        ListParams {
            resource_version: rv,
            resource_version_match: m,
            continue_token: cont,
            ..ListParams::default()
        }
    }

    fn messages(p: &ListParams<'_>) -> Vec<String> {
        validate_list_params(p)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn list_option_combinations() {
        assert!(messages(&list("", "", "")).is_empty());
        assert!(messages(&list("5", "Exact", "")).is_empty());
        assert!(messages(&list("0", "NotOlderThan", "")).is_empty());
        assert_eq!(
            messages(&list("", "Exact", "")),
            ["resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"]
        );
        assert_eq!(
            messages(&list("0", "Exact", "")),
            [
                r#"resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0""#
            ]
        );
        assert_eq!(
            messages(&list("5", "Newest", "tok")),
            [
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden when continue is provided",
                r#"resourceVersionMatch: Unsupported value: "Newest": supported values: "Exact", "NotOlderThan", """#,
            ]
        );
        let mut p = list("", "", "");
        p.send_initial_events = Some(true);
        assert_eq!(
            messages(&p),
            ["sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"]
        );
        let e = list_options_invalid(&validate_list_params(&list("", "Exact", "")));
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.to_string(),
            r#"ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"#
        );
    }

    #[test]
    fn watch_option_combinations() {
        let mut p = list("5", "", "");
        p.watch = true;
        assert!(messages(&p).is_empty());
        p.resource_version_match = "Exact";
        assert_eq!(
            messages(&p),
            [
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                r#"resourceVersionMatch: Unsupported value: "Exact": supported values: "NotOlderThan""#,
            ]
        );
        p.resource_version_match = "NotOlderThan";
        p.send_initial_events = Some(true);
        assert_eq!(
            messages(&p),
            ["sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"]
        );
        p.watch_list_enabled = true;
        assert!(messages(&p).is_empty());
        p.resource_version_match = "";
        assert_eq!(
            messages(&p),
            ["resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"]
        );
    }

    #[test]
    fn continue_tokens_round_trip_in_upstream_shape() {
        let t = encode_continue("/registry/pods/default/web-2", "/registry/pods/", 42).unwrap();
        let json = URL_SAFE_NO_PAD.decode(&t).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"v":"meta.k8s.io/v1","rv":42,"start":"default/web-2"}"#
        );
        assert!(!t.contains('='), "unpadded");
        let (key, rv) = decode_continue(&t, "/registry/pods/").unwrap();
        assert_eq!((key.as_str(), rv), ("/registry/pods/default/web-2", 42));
        assert_eq!(
            encode_continue("/other/x", "/registry/pods/", 1).unwrap_err(),
            Error::KeyOutsidePrefix
        );
    }

    #[test]
    fn accepts_tokens_made_by_kube_apiserver() {
        // {"v":"meta.k8s.io/v1","rv":1234,"start":"kube-system/coredns\u0000"}
        let raw = r#"{"v":"meta.k8s.io/v1","rv":1234,"start":"kube-system/coredns\u0000","rc":3}"#;
        let token = URL_SAFE_NO_PAD.encode(raw);
        let (key, rv) = decode_continue(&token, "/registry/pods/").unwrap();
        assert_eq!(key, "/registry/pods/kube-system/coredns\u{0}");
        assert_eq!(rv, 1234);
    }

    fn token(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn rejects_bad_tokens() {
        let p = "/registry/pods/";
        let err = |t: &str| decode_continue(t, p).unwrap_err().to_string();
        assert!(err("!!!").starts_with("continue key is not valid: "));
        assert!(err(&token("not json")).starts_with("continue key is not valid: "));
        assert_eq!(
            err(&token(r#"{"v":"v2","rv":1,"start":"a"}"#)),
            "continue key is not valid: server does not recognize this encoded version v2"
        );
        assert_eq!(
            err(&token(r#"{"v":"meta.k8s.io/v1","rv":0,"start":"a"}"#)),
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        );
        assert_eq!(
            err(&token(r#"{"v":"meta.k8s.io/v1","rv":5,"start":""}"#)),
            "continue key is not valid: encoded start key empty (version meta.k8s.io/v1)"
        );
        for escape in ["../secrets/x", "a/../../b", "/..", "a//b", "a/./b", "a/"] {
            let t = token(&format!(
                r#"{{"v":"meta.k8s.io/v1","rv":5,"start":"{escape}"}}"#
            ));
            assert_eq!(
                err(&t),
                format!("continue key is not valid: {escape}"),
                "{escape}"
            );
        }
        // Padded standard base64 is not what the server emits.
        let padded = base64::engine::general_purpose::STANDARD.encode("{\"v\":\"xy\"}");
        assert!(padded.ends_with('='));
        assert!(decode_continue(&padded, p).is_err());
    }
}
