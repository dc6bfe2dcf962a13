//! Serving discovery and OpenAPI documents with content negotiation,
//! ETags and caching headers (documents from `rkube_openapi`).

use axum::body::Body;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use rkube_machinery::StatusError;
use rkube_openapi::negotiate::{self, Discovery, V3Reply};

use crate::request::Query;
use crate::response;

fn accept(headers: &HeaderMap) -> String {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

fn reply(
    content_type: &str,
    body: Bytes,
    etag: Option<&str>,
    headers: &HeaderMap,
) -> Response<Body> {
    let quoted = etag.map(|e| format!("\"{e}\""));
    if let Some(tag) = &quoted {
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
        if matches {
            return Response::builder()
                .status(StatusCode::NOT_MODIFIED)
                .header(header::ETAG, tag.as_str())
                .body(Body::empty())
                .expect("static response parts are valid");
        }
    }
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::VARY, "Accept");
    if let Some(tag) = &quoted {
        builder = builder.header(header::ETAG, tag.as_str());
    }
    builder
        .body(Body::from(body))
        .expect("static response parts are valid")
}

fn not_acceptable() -> Response<Body> {
    response::error(StatusError::not_acceptable(&["application/json"]))
}

/// `/api` or `/apis`: aggregated discovery when asked for, else `legacy`.
pub fn discovery(
    headers: &HeaderMap,
    is_core: bool,
    legacy: impl FnOnce() -> serde_json::Value,
) -> Response<Body> {
    let form = negotiate::discovery(&accept(headers));
    if let Some((content_type, body)) = form.aggregated_body(is_core) {
        return reply(content_type, body, None, headers);
    }
    match form {
        Discovery::NotAcceptable => not_acceptable(),
        _ => {
            let mut resp = response::ok(&legacy());
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            resp
        }
    }
}

/// `/openapi/v2`.
pub fn v2(headers: &HeaderMap) -> Response<Body> {
    match negotiate::v2(&accept(headers)) {
        Some((content_type, body)) => {
            reply(content_type, body, Some(rkube_openapi::v2_hash()), headers)
        }
        None => not_acceptable(),
    }
}

/// `/openapi/v3` and `/openapi/v3/<group-version path>`.
pub fn v3(path: &str, query: &Query, headers: &HeaderMap) -> Response<Body> {
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if rest.is_empty() {
        return reply(
            "application/json",
            rkube_openapi::v3_index(),
            Some(rkube_openapi::v3_index_hash()),
            headers,
        );
    }
    match negotiate::v3(rest, query.get("hash"), &accept(headers)) {
        V3Reply::Document {
            body,
            etag,
            immutable,
        } => {
            let mut resp = reply("application/json", body, Some(etag), headers);
            if immutable && resp.status() == StatusCode::OK {
                let h = resp.headers_mut();
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
                if let Ok(v) = HeaderValue::from_str(&httpdate(std::time::SystemTime::now() + YEAR))
                {
                    h.insert(header::EXPIRES, v);
                }
            }
            resp
        }
        V3Reply::Redirect(location) => Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .expect("static response parts are valid"),
        V3Reply::NotFound => response::error(response::no_such_resource()),
        V3Reply::NotAcceptable => not_acceptable(),
    }
}

const YEAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// An HTTP date (RFC 7231 IMF-fixdate).
fn httpdate(t: std::time::SystemTime) -> String {
    let ts = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()
}
