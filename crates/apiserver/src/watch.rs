//! WATCH over HTTP: a chunked stream of JSON lines
//! `{"type": "ADDED", "object": {...}}`.
//!
//! Upstream counterpart: `endpoints/handlers/watch.go`. Errors after the
//! stream started (e.g. the start revision was compacted: 410 Gone) are
//! sent as an `ERROR` event carrying a Status, which is how clients learn to
//! relist.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use http::{header, Response, StatusCode};
use rkube_machinery::{rv, StatusError};
use rkube_registry::{ResourceStore, WatchEvent, WatchEventType};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::request::Query;
use crate::rest::filter;
use crate::table::{self, Form};

type Result<T, E = StatusError> = std::result::Result<T, E>;

/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Upstream's default: a random time between 30 and 60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub async fn watch(
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    query: &Query,
    form: Form,
) -> Result<Response<Body>> {
    let after = match query.get("resourceVersion").map(rv::parse_read).transpose() {
        Err(e) => return Err(StatusError::bad_request(e.to_string())),
        Ok(Some(rv::ReadVersion::At(rev))) => Some(rev),
        Ok(_) => None,
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = query.flag("allowWatchBookmarks");
    let include = query.get("includeObject").unwrap_or("Metadata").to_string();
    let mut events = rs.watch(ns, after, filter(rs, query)?).await?;
    let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(64);
    let rs = rs.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        let mut last_rv = after.unwrap_or(0).to_string();
        let mut first_table = true;
        loop {
            let line = tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                _ = bookmark.tick(), if bookmarks => {
                    let obj = json!({"kind": rs.info.kind, "apiVersion": rs.info.api_version(),
                                     "metadata": {"resourceVersion": last_rv}});
                    encode(WatchEventType::Bookmark.as_str(), obj)
                }
                event = events.next() => match event {
                    None => break,
                    Some(Err(err)) => {
                        let _ = tx.send(Ok(encode("ERROR", err.status().to_json()))).await;
                        break;
                    }
                    Some(Ok(WatchEvent { kind, object })) => {
                        if let Some(v) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                            last_rv = v.to_string();
                        }
                        let object = if form == Form::Metadata {
                            table::partial(&object)
                        } else if form == Form::Table {
                            match table_event(&rs, object, &include, first_table) {
                                Ok(t) => t,
                                Err(err) => {
                                    let _ = tx.send(Ok(encode("ERROR", err.status().to_json()))).await;
                                    break;
                                }
                            }
                        } else {
                            object
                        };
                        first_table = false;
                        encode(kind.as_str(), object)
                    }
                }
            };
            if tx.send(Ok(line)).await.is_err() {
                break;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid"))
}

fn encode(kind: &str, object: Value) -> bytes::Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    bytes::Bytes::from(line)
}

/// A one-row Table; the first carries the column definitions.
fn table_event(rs: &ResourceStore, object: Value, include: &str, first: bool) -> Result<Value> {
    let rv = object
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    let row = table::row(rs, object, include)?;
    let columns = if first {
        serde_json::to_value(rkube_api::table::columns(rs.info.group, rs.info.kind))
            .unwrap_or_default()
    } else {
        json!([])
    };
    Ok(json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": columns,
        "rows": [row],
    }))
}
