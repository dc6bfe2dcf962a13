//! `/containerLogs/{namespace}/{pod}/{container}`: reading CRI log files
//! with kubectl's options (`follow`, `previous`, `timestamps`,
//! `tailLines`, `sinceSeconds`, `sinceTime`, `limitBytes`), following
//! the live file across rotation until the container stops.
//!
//! Upstream counterpart: `pkg/kubelet/kuberuntime/logs/logs.go`
//! (`ReadLogs`: the CRI prefix is stripped, timestamps re-printed as
//! RFC3339Nano on request, partial records joined without a newline).

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rkube_containers::runtime::logs::{parse, Stream};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};
use tokio::sync::mpsc;

use crate::runtime::{ContainerInfo, PodRuntime};

/// How often a follow looks for new lines.
const POLL: Duration = Duration::from_millis(100);
/// How often a follow asks whether the container still runs.
const LIVENESS: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<u64>,
    /// Start at the end of the live file (attach).
    pub from_end: bool,
}

impl LogOptions {
    /// Reads the options from a query string; errors are upstream's
    /// validation messages.
    pub fn from_query(query: Option<&str>, now: jiff::Timestamp) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let flag = matches!(v.as_ref(), "true" | "1" | "True");
            match k.as_ref() {
                "follow" => o.follow = flag,
                "previous" => o.previous = flag,
                "timestamps" => o.timestamps = flag,
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    if n < 0 {
                        return Err(
                            "tailLines: Invalid value: must be greater than or equal to 0".into(),
                        );
                    }
                    o.tail_lines = Some(n as usize);
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: Invalid value: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: Invalid value: must be greater than 0".into());
                    }
                    o.since = now.checked_sub(jiff::SignedDuration::from_secs(n)).ok();
                }
                "sinceTime" => {
                    let t = v
                        .parse::<jiff::Timestamp>()
                        .map_err(|e| format!("invalid sinceTime {v:?}: {e}"))?;
                    o.since = Some(t);
                }
                _ => {}
            }
        }
        Ok(o)
    }
}

/// A piece of output and the stream it came from.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Bytes,
}

/// `path.N`, ..., `path.1`: the rotated files that exist, oldest first.
fn rotated(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in 1.. {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            break;
        }
        files.push(p);
    }
    files.reverse();
    files
}

/// RFC3339Nano as Go prints it: the fraction without trailing zeros.
fn go_rfc3339_nano(ts: &str) -> String {
    match ts.split_once('.') {
        Some((secs, frac)) => {
            let (digits, zone) = frac.split_at(
                frac.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(frac.len()),
            );
            let digits = digits.trim_end_matches('0');
            if digits.is_empty() {
                format!("{secs}{zone}")
            } else {
                format!("{secs}.{digits}{zone}")
            }
        }
        None => ts.to_string(),
    }
}

struct Emitter {
    opts: LogOptions,
    sent: u64,
    tx: mpsc::Sender<Chunk>,
}

impl Emitter {
    /// Formats one raw line; `None` when it is filtered out.
    fn format(&self, line: &[u8]) -> Option<Chunk> {
        let line = std::str::from_utf8(line).ok()?;
        let rec = parse(line.trim_end_matches('\n'))?;
        if let Some(since) = self.opts.since {
            let t: jiff::Timestamp = rec.timestamp.parse().ok()?;
            if t < since {
                return None;
            }
        }
        let mut out = String::new();
        if self.opts.timestamps {
            out.push_str(&go_rfc3339_nano(rec.timestamp));
            out.push(' ');
        }
        out.push_str(rec.content);
        if !rec.partial {
            out.push('\n');
        }
        Some(Chunk {
            stream: rec.stream,
            data: Bytes::from(out),
        })
    }

    /// Sends a chunk; false when the reader is gone or the byte limit is
    /// reached.
    async fn send(&mut self, mut chunk: Chunk) -> bool {
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.sent);
            if left == 0 {
                return false;
            }
            if (chunk.data.len() as u64) > left {
                chunk.data.truncate(left as usize);
            }
        }
        self.sent += chunk.data.len() as u64;
        self.tx.send(chunk).await.is_ok() && self.opts.limit_bytes.is_none_or(|l| self.sent < l)
    }
}

/// Reads whole lines; a line still being written stays in `partial`.
async fn read_lines(r: &mut BufReader<File>, partial: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    loop {
        match r.read_until(b'\n', partial).await {
            Ok(0) | Err(_) => break,
            Ok(_) if partial.ends_with(b"\n") => lines.push(std::mem::take(partial)),
            Ok(_) => break,
        }
    }
    lines
}

/// The lines of the rotated files newer than the one with inode `ino`
/// (none when that file is gone: it cannot be placed any more).
async fn newer_rotated(live: &Path, ino: u64) -> Vec<Vec<u8>> {
    let files = rotated(live);
    let mut found = false;
    let mut lines = Vec::new();
    for p in files {
        if found {
            if let Some((mut r, _)) = open(&p).await {
                let mut rest = Vec::new();
                lines.extend(read_lines(&mut r, &mut rest).await);
            }
        } else if tokio::fs::metadata(&p).await.is_ok_and(|m| m.ino() == ino) {
            found = true;
        }
    }
    lines
}

async fn open(path: &Path) -> Option<(BufReader<File>, u64)> {
    let f = File::open(path).await.ok()?;
    let ino = f.metadata().await.ok()?.ino();
    Some((BufReader::new(f), ino))
}

/// Streams `info`'s log to `tx` under `opts`. Follows end when the
/// container stops (re-checked through `rt` under `target`) or the
/// receiver goes away.
pub async fn stream(
    rt: Arc<dyn PodRuntime>,
    target: (String, String, String),
    info: ContainerInfo,
    opts: LogOptions,
    tx: mpsc::Sender<Chunk>,
) {
    let mut em = Emitter { opts, sent: 0, tx };
    let live = info.log_path.clone();
    let mut partial = Vec::new();
    let Some((mut reader, mut ino)) = open(&live).await else {
        return;
    };
    if em.opts.from_end {
        let _ = reader.seek(std::io::SeekFrom::End(0)).await;
    } else {
        let mut ring: VecDeque<Chunk> = VecDeque::new();
        let tail = em.opts.tail_lines;
        let mut older = Vec::new();
        for p in rotated(&live) {
            if let Some((mut r, _)) = open(&p).await {
                let mut rest = Vec::new();
                older.extend(read_lines(&mut r, &mut rest).await);
            }
        }
        let current = read_lines(&mut reader, &mut partial).await;
        for line in older.iter().chain(current.iter()) {
            let Some(chunk) = em.format(line) else {
                continue;
            };
            match tail {
                Some(n) => {
                    ring.push_back(chunk);
                    if ring.len() > n {
                        ring.pop_front();
                    }
                }
                None => {
                    if !em.send(chunk).await {
                        return;
                    }
                }
            }
        }
        for chunk in ring {
            if !em.send(chunk).await {
                return;
            }
        }
    }
    if !em.opts.follow {
        return;
    }
    let mut checked = Instant::now();
    let mut stopping = false;
    loop {
        let lines = read_lines(&mut reader, &mut partial).await;
        let got = !lines.is_empty();
        for line in lines {
            if let Some(chunk) = em.format(&line) {
                if !em.send(chunk).await {
                    return;
                }
            }
        }
        if got {
            continue;
        }
        // Rotated away: finish the old file (done above), go on in the new.
        if let Ok(meta) = tokio::fs::metadata(&live).await {
            if meta.ino() != ino {
                // Several rotations may have happened since the last
                // poll: the files newer than ours come first.
                for line in newer_rotated(&live, ino).await {
                    if let Some(chunk) = em.format(&line) {
                        if !em.send(chunk).await {
                            return;
                        }
                    }
                }
                if let Some((r, i)) = open(&live).await {
                    (reader, ino) = (r, i);
                    partial.clear();
                    continue;
                }
            }
        }
        if stopping || em.tx.is_closed() {
            return;
        }
        if checked.elapsed() >= LIVENESS {
            checked = Instant::now();
            let (ns, pod, c) = &target;
            match rt.container(ns, pod, c, false).await {
                Ok(now) if now.running && now.id == info.id => {}
                // One more pass picks up what was written before the exit.
                _ => stopping = true,
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_like_go() {
        assert_eq!(
            go_rfc3339_nano("2016-10-06T00:17:09.669794200Z"),
            "2016-10-06T00:17:09.6697942Z"
        );
        assert_eq!(
            go_rfc3339_nano("2016-10-06T00:17:09.000000000Z"),
            "2016-10-06T00:17:09Z"
        );
    }

    #[test]
    fn query_options_are_validated() {
        let now: jiff::Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let o = LogOptions::from_query(
            Some("follow=true&tailLines=5&timestamps=true&sinceSeconds=60&limitBytes=10"),
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(o.since, Some("2024-01-01T00:00:00Z".parse().unwrap()));
        assert!(LogOptions::from_query(Some("tailLines=-1"), now).is_err());
        assert!(LogOptions::from_query(Some("limitBytes=0"), now).is_err());
        assert!(LogOptions::from_query(Some("sinceTime=yesterday"), now).is_err());
    }
}
