//! CRI container log files: one line per record,
//! `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>`, with P for a
//! chunk of a line longer than the buffer and F for the end of a line, and
//! size-based rotation to `<path>.1`, `<path>.2`, ...
//!
//! Upstream counterpart: containerd's `pkg/cri/io/logger.go` (writer) and
//! kubelet's `pkg/kubelet/kuberuntime/logs` (parser).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest chunk written as one record; longer lines become P records.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// `2006-01-02T15:04:05.000000000Z`: UTC, nanoseconds always nine digits
/// (containerd's fixed-width form, which RFC3339Nano parsers accept).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Appends records to a CRI log file, rotating by size.
pub struct Writer {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl Writer {
    /// `max_size` 0 never rotates; `max_files` counts the live file.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Writer> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Writer {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    /// Writes one record; `partial` marks a chunk without its line end.
    pub fn record(&mut self, stream: Stream, partial: bool, content: &[u8]) -> io::Result<()> {
        let mut rec = format!(
            "{} {} {} ",
            timestamp(SystemTime::now()),
            stream.as_str(),
            if partial { "P" } else { "F" }
        )
        .into_bytes();
        rec.extend_from_slice(content);
        rec.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + rec.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files <= 1 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.max_files - 1).rev() {
                if numbered(n).exists() {
                    fs::rename(numbered(n), numbered(n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

/// Splits a byte stream into records: complete lines become F records,
/// runs of `MAX_LINE` bytes without a newline become P records, and
/// whatever is left at EOF is flushed as an F record.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, data: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        self.buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let line = &self.buf[start..start + i];
            for (n, chunk) in line.chunks(MAX_LINE).enumerate() {
                let last = (n + 1) * MAX_LINE >= line.len();
                emit(!last, chunk);
            }
            if line.is_empty() {
                emit(false, b"");
            }
            start += i + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() >= MAX_LINE {
            let rest = self.buf.split_off(MAX_LINE);
            emit(true, &self.buf);
            self.buf = rest;
        }
    }

    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if !self.buf.is_empty() {
            emit(false, &self.buf);
            self.buf.clear();
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub timestamp: &'a str,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a str,
}

/// Parses one line of a CRI log file (without its newline).
pub fn parse(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(Record {
        timestamp,
        stream,
        partial,
        content: parts.next().unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        let t = UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202);
        assert_eq!(timestamp(t), "2016-10-06T00:17:09.669794202Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }

    #[test]
    fn splitter_marks_partials() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.push(b"a\nb", |p, c| out.push((p, c.to_vec())));
        s.push(b"c\n\n", |p, c| out.push((p, c.to_vec())));
        let long = vec![b'x'; MAX_LINE + 5];
        s.push(&long, |p, c| out.push((p, c.to_vec())));
        s.finish(|p, c| out.push((p, c.to_vec())));
        assert_eq!(out[0], (false, b"a".to_vec()));
        assert_eq!(out[1], (false, b"bc".to_vec()));
        assert_eq!(out[2], (false, b"".to_vec()));
        assert_eq!((out[3].0, out[3].1.len()), (true, MAX_LINE));
        assert_eq!((out[4].0, out[4].1.len()), (false, 5));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn writer_rotates_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut w = Writer::open(&path, 200, 3).unwrap();
        for i in 0..20 {
            w.record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        let live = fs::read_to_string(&path).unwrap();
        assert!(live.len() <= 200);
        assert!(live.lines().last().unwrap().ends_with("stdout F line 19"));
        assert!(dir.path().join("c.log.1").exists() && dir.path().join("c.log.2").exists());
        assert!(!dir.path().join("c.log.3").exists());
        let r = parse(live.lines().next().unwrap()).unwrap();
        assert_eq!((r.stream, r.partial), (Stream::Stdout, false));
        assert!(parse("garbage").is_none());
    }
}
