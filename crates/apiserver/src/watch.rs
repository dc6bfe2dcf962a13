//! WATCH over HTTP: a chunked stream of JSON lines
//! `{"type": "ADDED", "object": {...}}`, or the same lines as WebSocket
//! text messages when the client asks to upgrade.
//!
//! Upstream counterpart: `endpoints/handlers/watch.go`. Errors after the
//! stream started (e.g. the start revision was compacted: 410 Gone) are
//! sent as an `ERROR` event carrying a Status, which is how clients learn to
//! relist. `sendInitialEvents=true` (with `resourceVersionMatch=
//! NotOlderThan`) is the streaming list client-go and kube-rs use instead
//! of LIST then WATCH.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use http::{header, Request, Response, StatusCode};
use rkube_machinery::{rv, FieldError, FieldPath, GroupKind, StatusError};
use rkube_registry::{InitialEvents, ResourceStore, WatchEvent, WatchEventType, WatchOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::request::Query;
use crate::rest::{filter, filter_reads, needles};
use crate::table::{self, Form};
use crate::websocket;

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
    req: Request<Body>,
) -> Result<Response<Body>> {
    let after = match query.get("resourceVersion").map(rv::parse_read).transpose() {
        Err(e) => return Err(StatusError::bad_request(e.to_string())),
        Ok(Some(rv::ReadVersion::At(rev))) => Some(rev),
        Ok(_) => None,
    };
    let initial = initial_events(query)?;
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = query.flag("allowWatchBookmarks");
    let include = query.get("includeObject").unwrap_or("Metadata").to_string();
    let opts = WatchOptions {
        after,
        initial,
        filter: filter(rs, query)?,
        filter_reads: filter_reads(rs, query)?,
        needles: needles(rs, query)?,
        // Metadata watches (the garbage collector's, on every resource)
        // send the stored metadata bytes too, never decoding the object.
        raw: form == Form::Object || form == Form::Metadata,
        progress: bookmarks,
        metadata_only: form == Form::Metadata,
    };
    let mut events = rs.watch(ns, opts).await?;
    let (tx, rx) = mpsc::channel::<bytes::Bytes>(64);
    let rs = rs.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        let mut last_rv = after.unwrap_or(0).to_string();
        let mut first_table = true;
        loop {
            let bookmark_obj = |rv: &str| {
                json!({"kind": rs.info.kind, "apiVersion": rs.info.api_version(),
                       "metadata": {"resourceVersion": rv}})
            };
            let line = tokio::select! {
                _ = &mut deadline => {
                    // As upstream: a last bookmark before a watch times
                    // out, so the client resumes from where it has got to
                    // and not from its last event, which for a quiet
                    // resource may have left the watch cache's window.
                    if bookmarks {
                        let line = encode(WatchEventType::Bookmark.as_str(), bookmark_obj(&last_rv));
                        let _ = tx.send(line).await;
                    }
                    break;
                }
                _ = tx.closed() => break,
                _ = bookmark.tick(), if bookmarks => {
                    encode(WatchEventType::Bookmark.as_str(), bookmark_obj(&last_rv))
                }
                event = events.next() => match event {
                    None => break,
                    Some(Err(err)) => {
                        let _ = tx.send(encode("ERROR", err.status().to_json())).await;
                        break;
                    }
                    // Every event up to here was sent or is not this
                    // watch's: the next bookmark carries this revision.
                    Some(Ok(WatchEvent { kind: WatchEventType::Progress, object, .. })) => {
                        if let Some(v) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                            last_rv = v.to_string();
                        }
                        continue;
                    }
                    // The end of a streaming list's initial events.
                    Some(Ok(WatchEvent { kind: WatchEventType::Bookmark, object, .. })) => {
                        if let Some(v) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                            last_rv = v.to_string();
                        }
                        encode(WatchEventType::Bookmark.as_str(), object)
                    }
                    Some(Ok(WatchEvent { kind, raw: Some(raw), .. })) if form == Form::Object => {
                        last_rv = raw.revision.to_string();
                        encode_raw(kind.as_str(), &raw.json)
                    }
                    Some(Ok(WatchEvent { kind, raw: Some(raw), .. })) if form == Form::Metadata => {
                        last_rv = raw.revision.to_string();
                        encode_raw_metadata(kind.as_str(), &raw.json)
                    }
                    Some(Ok(WatchEvent { kind, object, .. })) => {
                        if let Some(v) = object.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                            last_rv = v.to_string();
                        }
                        let object = if form == Form::Metadata {
                            table::partial(&object)
                        } else if form == Form::Table {
                            match table_event(&rs, object, &include, first_table) {
                                Ok(t) => t,
                                Err(err) => {
                                    let _ = tx.send(encode("ERROR", err.status().to_json())).await;
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
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    if websocket::is_upgrade(req.headers()) {
        return websocket::serve(req, rx);
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|item| (Ok::<_, std::io::Error>(item), rx))
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid"))
}

/// `sendInitialEvents` and `resourceVersionMatch` of a watch, checked as
/// upstream's `ValidateListOptions` checks them (422 on ListOptions).
fn initial_events(query: &Query) -> Result<InitialEvents> {
    let send = match query.get("sendInitialEvents") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(StatusError::bad_request(format!(
                "invalid sendInitialEvents {other:?}: must be true or false"
            )))
        }
    };
    let matching = query.get("resourceVersionMatch").unwrap_or("");
    let path = |f: &str| FieldPath::new(f);
    let mut errs = Vec::new();
    if send.is_some() && matching != "NotOlderThan" {
        errs.push(FieldError::forbidden(
            &path("resourceVersionMatch"),
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    // The end of the initial events is a bookmark: a client that does not
    // take bookmarks could never tell the list from the changes.
    if send == Some(true) && query.get("allowWatchBookmarks") != Some("true") {
        errs.push(FieldError::forbidden(
            &path("allowWatchBookmarks"),
            "sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    if !matching.is_empty() {
        if send.is_none() {
            errs.push(FieldError::forbidden(
                &path("resourceVersionMatch"),
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ));
        }
        if matching != "NotOlderThan" {
            errs.push(FieldError::not_supported(
                &path("resourceVersionMatch"),
                matching,
                &["NotOlderThan"],
            ));
        }
        if query.get("continue").is_some() {
            errs.push(FieldError::forbidden(
                &path("resourceVersionMatch"),
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
    }
    if !errs.is_empty() {
        return Err(StatusError::invalid(
            &GroupKind::new("meta.k8s.io", "ListOptions"),
            "",
            &errs,
        ));
    }
    Ok(match send {
        None => InitialEvents::Legacy,
        Some(true) => InitialEvents::Stream,
        Some(false) => InitialEvents::None,
    })
}

fn encode(kind: &str, object: Value) -> bytes::Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object}))
        .expect("JSON values serialize");
    line.push(b'\n');
    bytes::Bytes::from(line)
}

/// The same line as [`encode`], around an object's JSON bytes.
fn encode_raw(kind: &str, object: &[u8]) -> bytes::Bytes {
    let mut line = Vec::with_capacity(object.len() + kind.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    bytes::Bytes::from(line)
}

/// The line [`encode`] makes of [`table::partial`]'s object, around a
/// `metadata` object's JSON bytes.
fn encode_raw_metadata(kind: &str, metadata: &[u8]) -> bytes::Bytes {
    const OBJECT: &[u8] =
        b"\",\"object\":{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":";
    let mut line = Vec::with_capacity(metadata.len() + kind.len() + OBJECT.len() + 16);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(OBJECT);
    line.extend_from_slice(metadata);
    line.extend_from_slice(b"}}\n");
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
