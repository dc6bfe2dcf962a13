//! Building HTTP responses: JSON bodies and `metav1.Status` errors.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};
use rkube_machinery::StatusError;
use serde_json::Value;

pub const JSON: &str = "application/json";

pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("JSON values always serialize");
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, HeaderValue::from_static(JSON))
        .body(Body::from(body))
        .expect("static response parts are valid")
}

pub fn ok(value: &Value) -> Response<Body> {
    json(StatusCode::OK, value)
}

/// A `metav1.Status` error response with its HTTP code.
pub fn error(err: StatusError) -> Response<Body> {
    let code = StatusCode::from_u16(err.code() as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = err.status().details.as_ref().map(|d| d.retry_after_seconds);
    let mut resp = json(code, &err.status().to_json());
    if let Some(secs) = retry_after.filter(|s| *s > 0) {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

pub fn text(code: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .expect("static response parts are valid")
}

/// 404 for a path that names nothing the server serves.
pub fn no_such_resource() -> StatusError {
    rkube_machinery::Status::failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
    .into()
}
