//! The generic REST handlers: one implementation of each verb for every
//! resource.
//!
//! Upstream counterpart: `k8s.io/apiserver/pkg/endpoints/handlers`
//! (get.go, create.go, update.go, patch.go, delete.go, watch.go).

use std::sync::Arc;

use axum::body::Body;
use http::{header, Request, Response, StatusCode};
use rkube_machinery::{fields, labels, rv, StatusError};
use rkube_registry::project::Reads;
use rkube_registry::{selectable, Filter, ListOptions, ResourceStore, Target};
use serde_json::{json, Value};

use crate::request::{Query, RequestInfo};
use crate::response::{self, ok};
use crate::table::{self, Form};
use crate::{write, ApiServer};

type Result<T, E = StatusError> = std::result::Result<T, E>;

pub async fn handle(
    server: &Arc<ApiServer>,
    info: RequestInfo,
    query: Query,
    req: Request<Body>,
) -> Response<Body> {
    // What admission webhooks are told about the request (user,
    // subresource), for the strategy hooks the write reaches.
    let ctx = crate::admission::webhook::RequestContext {
        user: req.extensions().get::<crate::User>().cloned(),
        subresource: info.subresource.clone().unwrap_or_default(),
        warnings: Default::default(),
    };
    let warnings = ctx.warnings.clone();
    let handled = handle_inner(server, &info, &query, req);
    let mut resp = match crate::admission::webhook::scope(ctx, handled).await {
        Ok(resp) => resp,
        Err(err) => response::error(err),
    };
    let warnings = crate::admission::webhook::take_warnings(&warnings);
    crate::decode::add_warnings(&mut resp, &warnings);
    resp
}

async fn handle_inner(
    server: &Arc<ApiServer>,
    info: &RequestInfo,
    query: &Query,
    req: Request<Body>,
) -> Result<Response<Body>> {
    let Some(rs) = server.resource(&info.group, &info.version, &info.resource) else {
        return Err(response::no_such_resource());
    };
    if !rs.info.namespaced && info.namespace.is_some() {
        return Err(response::no_such_resource());
    }
    let ns = info.namespace.as_deref();
    let name = info.name.as_deref().unwrap_or("");
    if info.subresource.as_deref() == Some("scale") && rs.info.subresource("scale").is_some() {
        if !matches!(info.verb, "get" | "update" | "patch") {
            return Err(StatusError::method_not_supported(
                &rs.group_resource(),
                info.verb,
            ));
        }
        return crate::scale::handle(rs, ns, name, info.verb, query, req).await;
    }
    if crate::proxy::is_proxied(info) {
        return crate::proxy::handle(server, rs, info, query, req).await;
    }
    if info.subresource.as_deref() == Some("token")
        && rs.info.plural == "serviceaccounts"
        && rs.info.group.is_empty()
    {
        if info.verb != "create" {
            return Err(StatusError::method_not_supported(
                &rs.group_resource(),
                info.verb,
            ));
        }
        return crate::token::create(server, rs, ns.unwrap_or_default(), name, req).await;
    }
    if crate::review::is_review(rs.info) {
        return crate::review::create(server, rs.info, info, req).await;
    }
    let core = rs.info.group.is_empty();
    let pod_binding =
        core && rs.info.plural == "pods" && info.subresource.as_deref() == Some("binding");
    let legacy_binding = core && rs.info.plural == "bindings" && info.subresource.is_none();
    if pod_binding || legacy_binding {
        if info.verb != "create" {
            return Err(StatusError::method_not_supported(
                &rs.group_resource(),
                info.verb,
            ));
        }
        let ns = ns.unwrap_or_default();
        let url_name = pod_binding.then_some(name);
        return crate::binding::create(server, ns, url_name, query, req).await;
    }
    if core && rs.info.plural == "pods" && info.subresource.as_deref() == Some("eviction") {
        if info.verb != "create" {
            return Err(StatusError::method_not_supported(
                &rs.group_resource(),
                info.verb,
            ));
        }
        let ns = ns.unwrap_or_default();
        return crate::eviction::create(server, ns, name, query, req).await;
    }
    let target = match info.subresource.as_deref() {
        None => Target::Main,
        Some("status") if rs.info.subresource("status").is_some() => Target::Status,
        Some("finalize") if rs.info.subresource("finalize").is_some() => Target::Finalize,
        Some("approval") if rs.info.subresource("approval").is_some() => Target::Approval,
        Some("ephemeralcontainers") if rs.info.subresource("ephemeralcontainers").is_some() => {
            Target::EphemeralContainers
        }
        Some(_) => return Err(response::no_such_resource()),
    };
    let verbs_of_target = match target {
        Target::Main => rs.info.verbs,
        Target::Status => rkube_api::catalog::GET_PATCH_UPDATE,
        Target::Finalize => &["update"],
        Target::Approval => rkube_api::catalog::GET_PATCH_UPDATE,
        Target::EphemeralContainers => rkube_api::catalog::GET_PATCH_UPDATE,
        Target::Whole => &[],
    };
    if !verbs_of_target.contains(&info.verb) {
        return Err(StatusError::method_not_supported(
            &rs.group_resource(),
            info.verb,
        ));
    }
    if rs.info.namespaced && ns.is_none() && !matches!(info.verb, "list" | "watch") {
        return Err(StatusError::bad_request(format!(
            "the server could not find the requested resource: {} is namespaced",
            rs.info.plural
        )));
    }
    let form = table::form(req.headers());
    match info.verb {
        "get" => {
            let obj = rs.get(ns, name, None).await?;
            match form {
                Form::Table => table::objects(rs, vec![obj], meta_of_object(), query),
                Form::Metadata => Ok(ok(&table::partial(&obj))),
                Form::Object => Ok(ok(&obj)),
            }
        }
        "list" => list(rs, ns, query, form).await,
        "watch" => crate::watch::watch(rs, ns, query, form, req).await,
        "create" => write::create(server, rs, ns, query, req).await,
        "update" => write::update(server, rs, ns, name, target, query, req).await,
        "patch" => write::patch(server, rs, ns, name, target, query, req).await,
        "delete" => write::delete(server, rs, ns, name, query, req).await,
        "deletecollection" => write::delete_collection(server, rs, ns, query, req).await,
        _ => Err(StatusError::method_not_supported(
            &rs.group_resource(),
            info.verb,
        )),
    }
}

fn meta_of_object() -> Value {
    json!({})
}

/// The filter LIST and WATCH apply: label and field selectors.
pub fn filter(rs: &Arc<ResourceStore>, query: &Query) -> Result<Option<Filter>> {
    let label =
        match query.get("labelSelector") {
            Some(s) => Some(labels::Selector::parse(s).map_err(|e| {
                StatusError::bad_request(format!("unable to parse requirement: {e}"))
            })?),
            None => None,
        };
    let field = field_selector(rs, query)?;
    if label.is_none() && field.is_none() {
        return Ok(None);
    }
    let info = rs.info;
    Ok(Some(Arc::new(move |obj: &Value| {
        let labels_ok = label.as_ref().is_none_or(|l| l.matches_object(obj));
        labels_ok
            && field.as_ref().is_none_or(|f| {
                f.matches(|name| selectable::value(info, obj, name))
                    .unwrap_or(false)
            })
    })))
}

/// Where [`filter`]'s selectors read (labels, the selected fields), so a
/// watch judges events on objects decoded only there.
pub fn filter_reads(rs: &ResourceStore, query: &Query) -> Result<Option<Reads>> {
    let field = field_selector(rs, query)?;
    let labels = query.get("labelSelector").is_some();
    if !labels && field.is_none() {
        return Ok(None);
    }
    let mut pointers = Vec::new();
    if labels {
        pointers.push("/metadata/labels");
    }
    for term in field.iter().flat_map(|f| f.terms()) {
        pointers.extend(selectable::reads(rs.info, &term.field));
    }
    Ok(Some(Reads::new(pointers)))
}

/// The request's field selector, its labels checked against what the
/// resource supports (400 with upstream's message otherwise).
fn field_selector(rs: &ResourceStore, query: &Query) -> Result<Option<fields::Selector>> {
    let Some(s) = query.get("fieldSelector") else {
        return Ok(None);
    };
    let sel = fields::Selector::parse(s).map_err(|e| StatusError::bad_request(e.to_string()))?;
    for term in sel.terms() {
        selectable::check(rs.info, &term.field).map_err(StatusError::bad_request)?;
    }
    Ok((!sel.is_empty()).then_some(sel))
}

/// Bytes every object the field selector accepts contains when stored,
/// so a list skips the others without decoding them.
pub fn needles(rs: &ResourceStore, query: &Query) -> Result<Vec<Vec<u8>>> {
    let Some(sel) = field_selector(rs, query)? else {
        return Ok(Vec::new());
    };
    Ok(sel
        .terms()
        .iter()
        .filter(|t| t.operator != fields::Operator::NotEquals)
        .filter_map(|t| selectable::needle(rs.info, &t.field, &t.value))
        .collect())
}

async fn list(
    rs: &Arc<ResourceStore>,
    ns: Option<&str>,
    query: &Query,
    form: Form,
) -> Result<Response<Body>> {
    if query.get("sendInitialEvents").is_some() {
        let err = rkube_machinery::FieldError::forbidden(
            &rkube_machinery::FieldPath::new("sendInitialEvents"),
            "sendInitialEvents is forbidden for list",
        );
        return Err(StatusError::invalid(
            &rkube_machinery::GroupKind::new("meta.k8s.io", "ListOptions"),
            "",
            &[err],
        ));
    }
    let prefix = rs.list_prefix(ns);
    let limit = match query.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| StatusError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let mut opts = ListOptions {
        filter: filter(rs, query)?,
        needles: needles(rs, query)?,
        limit: limit.max(0) as usize,
        ..Default::default()
    };
    if let Some(token) = query.get("continue") {
        let (key, revision) = rv::decode_continue(token, &prefix)
            .map_err(|e| StatusError::bad_request(e.to_string()))?;
        opts.start_after = Some(
            key.strip_prefix(&prefix)
                .unwrap_or(&key)
                .trim_end_matches('\0')
                .to_string(),
        );
        opts.revision = Some(revision);
    } else if let Some(v) = query.get("resourceVersion") {
        let read = rv::parse_read(v).map_err(|e| StatusError::bad_request(e.to_string()))?;
        if let rv::ReadVersion::At(rev) = read {
            if query.get("resourceVersionMatch") == Some("Exact") {
                opts.revision = Some(rev);
            }
        }
    }
    // Without a filter or a Table, stored bytes go out as they are.
    if opts.filter.is_none() && form == Form::Object {
        let page = rs.list_raw(ns, &opts).await?;
        let list_meta = list_metadata(
            &prefix,
            page.revision,
            page.continue_after.as_deref(),
            page.remaining,
        )?;
        return Ok(raw_list(rs, &list_meta, &page.items));
    }
    let page = rs.list(ns, &opts).await?;
    let list_meta = list_metadata(
        &prefix,
        page.revision,
        page.continue_after.as_deref(),
        page.remaining,
    )?;
    match form {
        Form::Table => return table::objects(rs, page.items, list_meta, query),
        Form::Metadata => {
            let items: Vec<Value> = page.items.iter().map(table::partial).collect();
            return Ok(ok(&json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": items,
            })));
        }
        Form::Object => {}
    }
    Ok(ok(&json!({
        "kind": rs.info.list_kind(),
        "apiVersion": rs.info.api_version(),
        "metadata": list_meta,
        "items": page.items,
    })))
}

/// A list's `metadata`: resourceVersion, and where the next page starts.
fn list_metadata(
    prefix: &str,
    revision: i64,
    after: Option<&str>,
    remaining: Option<i64>,
) -> Result<Value> {
    let mut list_meta = json!({"resourceVersion": revision.to_string()});
    if let Some(after) = after {
        // The token names the first key not returned; resuming reads keys
        // strictly after `after`, so `after\0` is the next possible key.
        let next = format!("{prefix}{after}\u{0}");
        let token = rv::encode_continue(&next, prefix, revision)
            .map_err(|e| StatusError::internal_error(e.to_string()))?;
        list_meta["continue"] = token.into();
        if let Some(n) = remaining.filter(|n| *n > 0) {
            list_meta["remainingItemCount"] = n.into();
        }
    }
    Ok(list_meta)
}

/// A List document around items that are already JSON.
fn raw_list(rs: &ResourceStore, list_meta: &Value, items: &[Vec<u8>]) -> Response<Body> {
    let head = json!({"kind": rs.info.list_kind(), "apiVersion": rs.info.api_version(), "metadata": list_meta});
    let mut body = serde_json::to_vec(&head).expect("JSON values serialize");
    body.pop(); // the closing brace
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    body.reserve(size + 12);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, response::JSON)
        .body(Body::from(body))
        .expect("static response parts are valid")
}

/// Read a request body of at most 3 MiB.
pub async fn body(req: Request<Body>) -> Result<(String, bytes::Bytes)> {
    const LIMIT: usize = 3 * 1024 * 1024;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let bytes = axum::body::to_bytes(req.into_body(), LIMIT)
        .await
        .map_err(|_| StatusError::request_entity_too_large(&format!("limit is {LIMIT}")))?;
    Ok((content_type, bytes))
}

pub fn created(obj: &Value) -> Response<Body> {
    response::json(StatusCode::CREATED, obj)
}
