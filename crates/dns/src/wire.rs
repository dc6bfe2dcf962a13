//! The DNS wire format (RFC 1035) for the few things the cluster DNS
//! server needs: parse a query's header and single question, and build a
//! response with A/AAAA/CNAME/PTR/SRV answers and an SOA in the
//! authority section.
//!
//! Upstream counterpart: CoreDNS uses miekg/dns; a hand-written codec
//! keeps the hot path allocation-light and the crate dependency-free.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Record types the server answers.
pub const TYPE_A: u16 = 1;
pub const TYPE_NS: u16 = 2;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const TYPE_PTR: u16 = 12;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_ANY: u16 = 255;
const CLASS_IN: u16 = 1;

/// Response codes.
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_FORMERR: u8 = 1;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_NOTIMP: u8 = 4;

/// Errors of parsing a DNS message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("message shorter than its header")]
    Short,
    #[error("message is not a query")]
    NotQuery,
    #[error("query carries {0} questions, want 1")]
    Questions(u16),
    #[error("malformed name in question")]
    Name,
}

/// A parsed query: the header fields a response echoes and the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub opcode: u8,
    pub recursion_desired: bool,
    /// The question name, lower-cased, without the trailing dot.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
    /// Where the question section ends (the answer section starts there).
    pub question_end: usize,
}

/// Parses a query message with exactly one question.
pub fn parse_query(msg: &[u8]) -> Result<Query, Error> {
    if msg.len() < 12 {
        return Err(Error::Short);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    if msg[2] & 0x80 != 0 {
        return Err(Error::NotQuery);
    }
    let opcode = (msg[2] >> 3) & 0x0f;
    let recursion_desired = msg[2] & 0x01 != 0;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qdcount != 1 {
        return Err(Error::Questions(qdcount));
    }
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = *msg.get(pos).ok_or(Error::Name)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        // Questions carry no compression pointers (the first name of a
        // message has nothing to point to).
        if len > 63 || pos + len > msg.len() || name.len() + len > 254 {
            return Err(Error::Name);
        }
        if !name.is_empty() {
            name.push('.');
        }
        for &b in &msg[pos..pos + len] {
            if b == b'.' || !b.is_ascii_graphic() {
                return Err(Error::Name);
            }
            name.push(b.to_ascii_lowercase() as char);
        }
        pos += len;
    }
    if pos + 4 > msg.len() {
        return Err(Error::Name);
    }
    let qtype = u16::from_be_bytes([msg[pos], msg[pos + 1]]);
    let qclass = u16::from_be_bytes([msg[pos + 2], msg[pos + 3]]);
    Ok(Query {
        id,
        opcode,
        recursion_desired,
        name,
        qtype,
        qclass,
        question_end: pos + 4,
    })
}

/// Record data of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ptr(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Soa {
        mname: String,
        rname: String,
        serial: u32,
        refresh: u32,
        retry: u32,
        expire: u32,
        minimum: u32,
    },
}

impl Rdata {
    /// The record type this data belongs to.
    pub fn rtype(&self) -> u16 {
        match self {
            Rdata::A(_) => TYPE_A,
            Rdata::Aaaa(_) => TYPE_AAAA,
            Rdata::Cname(_) => TYPE_CNAME,
            Rdata::Ptr(_) => TYPE_PTR,
            Rdata::Srv { .. } => TYPE_SRV,
            Rdata::Soa { .. } => TYPE_SOA,
        }
    }
}

/// One resource record: owner name (no trailing dot), TTL and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: Rdata,
}

/// Builds a response to `query` (whose raw bytes are `raw`) with the given
/// code and sections. The question is copied from the query verbatim so
/// the client matches it, and the answer owner equal to the question name
/// is written as a pointer to it.
pub fn response(
    raw: &[u8],
    query: &Query,
    rcode: u8,
    authoritative: bool,
    answers: &[Record],
    authority: &[Record],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(query.question_end + 64 * (answers.len() + authority.len()));
    out.extend_from_slice(&query.id.to_be_bytes());
    let mut flags1 = 0x80 | (query.opcode << 3);
    if authoritative {
        flags1 |= 0x04;
    }
    if query.recursion_desired {
        flags1 |= 0x01;
    }
    out.push(flags1);
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&(authority.len() as u16).to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&raw[12..query.question_end]);
    for r in answers.iter().chain(authority) {
        write_record(&mut out, query, r);
    }
    out
}

/// A bare response carrying only a code (FORMERR, NOTIMP, SERVFAIL).
pub fn error_response(raw: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(raw.get(0..2).unwrap_or(&[0, 0]));
    out.push(0x80 | raw.get(2).map_or(0, |b| b & 0x79));
    out.push(0x80 | (rcode & 0x0f));
    out.extend_from_slice(&[0; 8]);
    out
}

fn write_record(out: &mut Vec<u8>, query: &Query, r: &Record) {
    write_name(out, query, &r.name);
    out.extend_from_slice(&r.data.rtype().to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    match &r.data {
        Rdata::A(ip) => out.extend_from_slice(&ip.octets()),
        Rdata::Aaaa(ip) => out.extend_from_slice(&ip.octets()),
        Rdata::Cname(n) | Rdata::Ptr(n) => write_name(out, query, n),
        Rdata::Srv {
            priority,
            weight,
            port,
            target,
        } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            // RFC 2782: the SRV target is not compressed.
            write_plain_name(out, target);
        }
        Rdata::Soa {
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            minimum,
        } => {
            write_name(out, query, mname);
            write_name(out, query, rname);
            for v in [serial, refresh, retry, expire, minimum] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
    }
    let len = (out.len() - len_at - 2) as u16;
    out[len_at..len_at + 2].copy_from_slice(&len.to_be_bytes());
}

fn write_name(out: &mut Vec<u8>, query: &Query, name: &str) {
    if name.eq_ignore_ascii_case(&query.name) {
        out.extend_from_slice(&[0xc0, 0x0c]);
    } else {
        write_plain_name(out, name);
    }
}

fn write_plain_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    out.push(0);
}

/// Builds a query message (for tests and the forwarder's health checks).
pub fn build_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    write_plain_name(&mut out, name);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out
}

/// A decoded response: code, authoritative flag, truncation flag and the
/// answer and authority records. Used by the forwarder's callers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub authoritative: bool,
    pub truncated: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

/// Parses a response message (names decompressed, unknown types skipped).
pub fn parse_response(msg: &[u8]) -> Result<Response, Error> {
    if msg.len() < 12 {
        return Err(Error::Short);
    }
    let count = |i: usize| u16::from_be_bytes([msg[i], msg[i + 1]]) as usize;
    let (qd, an, ns) = (count(4), count(6), count(8));
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let read = |n: usize, pos: &mut usize| -> Result<Vec<Record>, Error> {
        let mut out = Vec::new();
        for _ in 0..n {
            let (name, p) = read_name(msg, *pos)?;
            let hdr = msg.get(p..p + 10).ok_or(Error::Name)?;
            let rtype = u16::from_be_bytes([hdr[0], hdr[1]]);
            let ttl = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
            let len = u16::from_be_bytes([hdr[8], hdr[9]]) as usize;
            let start = p + 10;
            let rd = msg.get(start..start + len).ok_or(Error::Name)?;
            let data = match rtype {
                TYPE_A if len == 4 => Some(Rdata::A(Ipv4Addr::new(rd[0], rd[1], rd[2], rd[3]))),
                TYPE_AAAA if len == 16 => {
                    let o: [u8; 16] = rd.try_into().map_err(|_| Error::Name)?;
                    Some(Rdata::Aaaa(Ipv6Addr::from(o)))
                }
                TYPE_CNAME => Some(Rdata::Cname(read_name(msg, start)?.0)),
                TYPE_PTR => Some(Rdata::Ptr(read_name(msg, start)?.0)),
                TYPE_SRV if len >= 7 => Some(Rdata::Srv {
                    priority: u16::from_be_bytes([rd[0], rd[1]]),
                    weight: u16::from_be_bytes([rd[2], rd[3]]),
                    port: u16::from_be_bytes([rd[4], rd[5]]),
                    target: read_name(msg, start + 6)?.0,
                }),
                TYPE_SOA => {
                    let (mname, p1) = read_name(msg, start)?;
                    let (rname, p2) = read_name(msg, p1)?;
                    let n = msg.get(p2..p2 + 20).ok_or(Error::Name)?;
                    let v = |i: usize| u32::from_be_bytes([n[i], n[i + 1], n[i + 2], n[i + 3]]);
                    Some(Rdata::Soa {
                        mname,
                        rname,
                        serial: v(0),
                        refresh: v(4),
                        retry: v(8),
                        expire: v(12),
                        minimum: v(16),
                    })
                }
                _ => None,
            };
            if let Some(data) = data {
                out.push(Record { name, ttl, data });
            }
            *pos = start + len;
        }
        Ok(out)
    };
    let answers = read(an, &mut pos)?;
    let authority = read(ns, &mut pos)?;
    Ok(Response {
        id: u16::from_be_bytes([msg[0], msg[1]]),
        rcode: msg[3] & 0x0f,
        authoritative: msg[2] & 0x04 != 0,
        truncated: msg[2] & 0x02 != 0,
        answers,
        authority,
    })
}

/// Reads a possibly compressed name at `pos`; returns it and the position
/// after it in the original stream.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), Error> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or(Error::Name)? as usize;
        if len & 0xc0 == 0xc0 {
            let lo = *msg.get(pos + 1).ok_or(Error::Name)? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3f) << 8) | lo;
            continue;
        }
        if len == 0 {
            return Ok((name, end.unwrap_or(pos + 1)));
        }
        let label = msg.get(pos + 1..pos + 1 + len).ok_or(Error::Name)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
    Err(Error::Name)
}

/// Where the question section of a message with one question ends.
pub fn parse_query_end(msg: &[u8]) -> Option<usize> {
    let (_, p) = read_name(msg, 12).ok()?;
    Some(p + 4).filter(|&e| e <= msg.len())
}
