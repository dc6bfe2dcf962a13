//! Reads: point gets and paged lists, at the latest revision or a past one.
//!
//! Each read runs in one read transaction and reports the revision recorded
//! in that snapshot, so a list page and the revision it claims always agree.

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Shared;
use crate::{prefix_end, Error, KeyValue, ListOptions, ListResponse, Result, Revision};

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    Error::sqlite(op)
}

/// Run `f` inside a read transaction, passing the snapshot's revision.
fn snapshot<T>(
    conn: &Connection,
    op: &'static str,
    f: impl FnOnce(Revision) -> Result<T>,
) -> Result<T> {
    conn.execute_batch("BEGIN").map_err(sql(op))?;
    let out = conn
        .query_row("SELECT value FROM meta WHERE name = 'revision'", [], |r| {
            r.get(0)
        })
        .map_err(sql(op))
        .and_then(f);
    // A read transaction has nothing to undo; ending it frees the snapshot.
    let _ = conn.execute_batch("COMMIT");
    out
}

fn key_value(r: &Row<'_>) -> rusqlite::Result<KeyValue> {
    let key: Vec<u8> = r.get(0)?;
    Ok(KeyValue {
        key: String::from_utf8_lossy(&key).into_owned(),
        create_revision: r.get(1)?,
        mod_revision: r.get(2)?,
        value: r.get(3)?,
    })
}

pub(super) fn get(
    conn: &Connection,
    shared: &Shared,
    key: &str,
    revision: Option<Revision>,
) -> Result<(Option<KeyValue>, Revision)> {
    snapshot(conn, "get", |current| {
        let kv = match revision {
            None => conn
                .prepare_cached(
                    "SELECT c.key, c.create_rev, c.mod_rev, l.value FROM current c \
                     JOIN log l ON l.rev = c.mod_rev WHERE c.key = ?1",
                )
                .and_then(|mut s| s.query_row([key.as_bytes()], key_value).optional())
                .map_err(sql("get"))?,
            Some(rev) => {
                shared.check_readable(rev, current)?;
                conn.prepare_cached(
                    "SELECT key, create_rev, rev, value, deleted FROM log \
                     WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![key.as_bytes(), rev], |r| {
                        let deleted: bool = r.get(4)?;
                        (!deleted).then(|| key_value(r)).transpose()
                    })
                    .optional()
                })
                .map_err(sql("get"))?
                .flatten()
            }
        };
        Ok((kv, current))
    })
}

/// The key range of a prefix, as blob bounds: `[lo, hi)`, where `lo` is
/// exclusive when continuing after a key.
struct Range {
    lo: Vec<u8>,
    lo_exclusive: bool,
    hi: Vec<u8>,
}

impl Range {
    fn new(prefix: &str, start_after: Option<&str>) -> Range {
        // Past every key there is: bytes above any UTF-8 lead byte.
        let hi = prefix_end(prefix).unwrap_or_else(|| vec![0xff; 8]);
        match start_after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => Range {
                lo: after.as_bytes().to_vec(),
                lo_exclusive: true,
                hi,
            },
            _ => Range {
                lo: prefix.as_bytes().to_vec(),
                lo_exclusive: false,
                hi,
            },
        }
    }

    fn lower(&self) -> &'static str {
        if self.lo_exclusive {
            ">"
        } else {
            ">="
        }
    }
}

pub(super) fn list(
    conn: &Connection,
    shared: &Shared,
    prefix: &str,
    opts: &ListOptions,
) -> Result<ListResponse> {
    snapshot(conn, "list", |current| {
        let at = match opts.revision {
            Some(rev) if rev != current => {
                shared.check_readable(rev, current)?;
                Some(rev)
            }
            _ => None,
        };
        let range = Range::new(prefix, opts.start_after.as_deref());
        let fetch = if opts.limit == 0 {
            i64::MAX
        } else {
            opts.limit as i64 + 1
        };
        let lower = range.lower();
        let mut items: Vec<KeyValue> = match at {
            None => {
                let q = format!(
                    "SELECT c.key, c.create_rev, c.mod_rev, l.value FROM current c \
                     JOIN log l ON l.rev = c.mod_rev \
                     WHERE c.key {lower} ?1 AND c.key < ?2 ORDER BY c.key LIMIT ?3"
                );
                query_kvs(conn, &q, params![range.lo, range.hi, fetch])?
            }
            Some(rev) => {
                let mut items = Vec::new();
                let (lo, exclusive) = (range.lo.clone(), range.lo_exclusive);
                walk_at(conn, lo, exclusive, &range.hi, rev, true, |kv| {
                    items.push(kv);
                    (items.len() as i64) < fetch
                })?;
                items
            }
        };
        let more = opts.limit != 0 && items.len() > opts.limit;
        let mut remaining = 0;
        if more {
            items.truncate(opts.limit);
            let last = items
                .last()
                .map(|kv| kv.key.as_bytes().to_vec())
                .unwrap_or_default();
            remaining = count_after(conn, &last, &range.hi, at)?;
        }
        Ok(ListResponse {
            items,
            revision: at.unwrap_or(current),
            more,
            remaining,
        })
    })
}

fn query_kvs(conn: &Connection, q: &str, params: impl rusqlite::Params) -> Result<Vec<KeyValue>> {
    let mut stmt = conn.prepare_cached(q).map_err(sql("list"))?;
    let rows = stmt.query_map(params, key_value).map_err(sql("list"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql("list"))
}

fn count_after(conn: &Connection, after: &[u8], hi: &[u8], at: Option<Revision>) -> Result<i64> {
    let result = match at {
        None => conn
            .prepare_cached("SELECT COUNT(*) FROM current WHERE key > ?1 AND key < ?2")
            .and_then(|mut s| s.query_row(params![after, hi], |r| r.get(0))),
        Some(rev) => {
            let mut n = 0;
            walk_at(conn, after.to_vec(), true, hi, rev, false, |_| {
                n += 1;
                true
            })?;
            return Ok(n);
        }
    };
    result.map_err(sql("list"))
}

/// The keys in `[lo, hi)` (`lo` excluded when `exclusive`) live at `rev`,
/// in key order, each as of its newest write at or before `rev` (with its
/// value when `values`), given to `take` until it returns false. Walks the
/// `(key, rev)` index a key at a time, so a page costs its own keys: one
/// query grouping the range by key read every revision of every key after
/// the page's start, values included, for each page of a paged list at a
/// past revision (an informer relisting ten thousand pods read the pods'
/// whole history twenty times).
fn walk_at(
    conn: &Connection,
    lo: Vec<u8>,
    exclusive: bool,
    hi: &[u8],
    rev: Revision,
    values: bool,
    mut take: impl FnMut(KeyValue) -> bool,
) -> Result<()> {
    let mut next_key = conn
        .prepare_cached("SELECT key FROM log WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT 1")
        .map_err(sql("list"))?;
    let mut newest = conn
        .prepare_cached(if values {
            "SELECT create_rev, rev, deleted, value FROM log \
             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1"
        } else {
            "SELECT create_rev, rev, deleted, X'' FROM log \
             WHERE key = ?1 AND rev <= ?2 ORDER BY rev DESC LIMIT 1"
        })
        .map_err(sql("list"))?;
    let mut key = lo;
    let mut first = !exclusive;
    loop {
        if !first {
            let next: Option<Vec<u8>> = next_key
                .query_row(params![key, hi], |r| r.get(0))
                .optional()
                .map_err(sql("list"))?;
            match next {
                Some(k) => key = k,
                None => return Ok(()),
            }
        }
        first = false;
        if key.as_slice() >= hi {
            return Ok(());
        }
        let found = newest
            .query_row(params![key, rev], |r| {
                let deleted: bool = r.get(2)?;
                Ok((!deleted).then(|| -> rusqlite::Result<KeyValue> {
                    Ok(KeyValue {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        create_revision: r.get(0)?,
                        mod_revision: r.get(1)?,
                        value: r.get(3)?,
                    })
                }))
            })
            .optional()
            .map_err(sql("list"))?;
        if let Some(kv) = found.flatten().transpose().map_err(sql("list"))? {
            if !take(kv) {
                return Ok(());
            }
        }
    }
}

pub(super) fn count(conn: &Connection, prefix: &str) -> Result<i64> {
    let range = Range::new(prefix, None);
    conn.prepare_cached("SELECT COUNT(*) FROM current WHERE key >= ?1 AND key < ?2")
        .and_then(|mut s| s.query_row(params![range.lo, range.hi], |r| r.get(0)))
        .map_err(sql("count"))
}
