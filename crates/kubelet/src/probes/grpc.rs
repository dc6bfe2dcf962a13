//! gRPC probes: one `grpc.health.v1.Health/Check` call over cleartext
//! HTTP/2 (h2c with prior knowledge, as grpc-go's insecure credentials),
//! with the probe's `service` in the request; `SERVING` is success.
//!
//! Upstream counterpart: `pkg/probe/grpc/grpc.go`, whose failure wording
//! this keeps ("service unhealthy (responded with \"NOT_SERVING\")",
//! "this server does not implement the grpc health protocol ...").
//! The messages are the two of `grpc/health/v1/health.proto`, declared
//! here with prost's derive rather than generated: two fields do not
//! justify a build script.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::net::TcpStream;

#[derive(Clone, PartialEq, Message)]
pub(super) struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

#[derive(Clone, PartialEq, Message)]
pub(super) struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    pub status: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub(super) enum ServingStatus {
    Unknown = 0,
    Serving = 1,
    NotServing = 2,
    ServiceUnknown = 3,
}

const METHOD: &str = "/grpc.health.v1.Health/Check";

/// gRPC status codes upstream's messages name.
fn code_name(code: u32) -> String {
    let name = match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => return format!("Code({code})"),
    };
    name.to_string()
}

fn status_name(status: i32) -> &'static str {
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => "SERVING",
        Ok(ServingStatus::NotServing) => "NOT_SERVING",
        Ok(ServingStatus::ServiceUnknown) => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

/// A gRPC message with its 5-byte length prefix (uncompressed).
pub(super) fn frame(msg: &impl Message) -> Bytes {
    let body = msg.encode_to_vec();
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// The first message of a length-prefixed gRPC body.
pub(super) fn unframe<M: Message + Default>(body: &[u8]) -> Result<M, String> {
    if body.len() < 5 {
        return Err("short gRPC message".into());
    }
    if body[0] != 0 {
        return Err("compressed gRPC message (none was asked for)".into());
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let msg = body.get(5..5 + len).ok_or("truncated gRPC message")?;
    M::decode(msg).map_err(|e| format!("decoding HealthCheckResponse: {e}"))
}

/// Calls Check on an established connection. `authority` is the dialled
/// address (the :authority pseudo-header).
pub(super) async fn check(
    tcp: TcpStream,
    authority: &str,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, call(tcp, authority, service, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "timeout: health rpc did not complete within {}",
            go_duration(timeout)
        )),
    }
}

async fn call(
    tcp: TcpStream,
    authority: &str,
    service: &str,
    timeout: Duration,
) -> Result<(), String> {
    let failed = |e: h2::Error| format!("error: health rpc probe failed: {e}");
    let (client, conn) = h2::client::handshake(tcp)
        .await
        .map_err(|e| format!("timeout: failed to connect service {authority:?}: {e}"))?;
    // The connection task ends when the client handle is dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.map_err(failed)?;
    let req = http::Request::builder()
        .method(http::Method::POST)
        .uri(format!("http://{authority}{METHOD}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.33")
        .header("grpc-timeout", format!("{}m", timeout.as_millis().max(1)))
        .body(())
        .map_err(|e| format!("error: health rpc probe failed: {e}"))?;
    let (response, mut send) = client.send_request(req, false).map_err(failed)?;
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    send.send_data(frame(&request), true).map_err(failed)?;
    let response = response.await.map_err(failed)?;
    let (head, mut body) = response.into_parts();
    if head.status != http::StatusCode::OK {
        return Err(format!(
            "error: health rpc probe failed: rpc error: code = Unknown desc = unexpected HTTP status code received from server: {}",
            head.status.as_u16()
        ));
    }
    let mut data = Vec::new();
    // A "trailers-only" response carries grpc-status in its headers.
    let mut status = grpc_status(&head.headers);
    if status.is_none() {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(failed)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(failed)?;
        status = trailers.as_ref().and_then(grpc_status);
    }
    let (code, message) = status.unwrap_or((
        2,
        "server closed the stream without sending trailers".to_string(),
    ));
    match code {
        0 => {}
        12 => {
            return Err(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): rpc error: code = Unimplemented desc = {message}"
            ))
        }
        _ => {
            return Err(format!(
                "error: health rpc probe failed: rpc error: code = {} desc = {message}",
                code_name(code)
            ))
        }
    }
    let reply: HealthCheckResponse =
        unframe(&data).map_err(|e| format!("error: health rpc probe failed: {e}"))?;
    if reply.status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(format!(
            "service unhealthy (responded with {:?})",
            status_name(reply.status)
        ))
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(u32, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((code, message))
}

/// grpc-message is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Durations as Go prints them in upstream's messages ("1s", "1.5s").
fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Health server over h2: "" serves, "down" does not, "gone" is
    /// unknown (NotFound), anything else answers Unimplemented.
    async fn serve_one(listener: &tokio::net::TcpListener) {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(tcp).await.unwrap();
        while let Some(req) = conn.accept().await {
            let (req, mut respond) = req.unwrap();
            assert_eq!(req.uri().path(), METHOD);
            assert_eq!(req.headers()["content-type"], "application/grpc");
            let mut body = req.into_body();
            let mut data = Vec::new();
            while let Some(chunk) = body.data().await {
                data.extend_from_slice(&chunk.unwrap());
            }
            let asked: HealthCheckRequest = unframe(&data).unwrap();
            let head = http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let reply = |status: ServingStatus| HealthCheckResponse {
                status: status as i32,
            };
            let (msg, code, text) = match asked.service.as_str() {
                "" => (Some(reply(ServingStatus::Serving)), "0", ""),
                "down" => (Some(reply(ServingStatus::NotServing)), "0", ""),
                "gone" => (None, "5", "unknown%20service"),
                _ => (None, "12", "unknown service grpc.health.v1.Health"),
            };
            let mut stream = respond.send_response(head, false).unwrap();
            if let Some(m) = msg {
                stream.send_data(frame(&m), false).unwrap();
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", code.parse().unwrap());
            trailers.insert("grpc-message", text.parse().unwrap());
            stream.send_trailers(trailers).unwrap();
        }
    }

    async fn probe(port: u16, service: &str) -> Result<(), String> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        check(
            tcp,
            &format!("127.0.0.1:{port}"),
            service,
            Duration::from_secs(5),
        )
        .await
    }

    #[tokio::test]
    async fn health_check_outcomes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for _ in 0..4 {
                serve_one(&listener).await;
            }
        });
        probe(port, "").await.unwrap();
        assert_eq!(
            probe(port, "down").await.unwrap_err(),
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
        assert_eq!(
            probe(port, "gone").await.unwrap_err(),
            "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
        );
        let err = probe(port, "other").await.unwrap_err();
        assert!(
            err.starts_with("this server does not implement the grpc health protocol"),
            "{err}"
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts and holds the connection without speaking HTTP/2.
        let hold = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let err = check(tcp, "x", "", Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(
            err.starts_with("timeout: health rpc did not complete"),
            "{err}"
        );
        drop(hold);
    }

    #[test]
    fn framing_round_trip_and_decoding() {
        let f = frame(&HealthCheckRequest {
            service: "svc".into(),
        });
        assert_eq!(&f[..5], &[0, 0, 0, 0, 5]);
        let back: HealthCheckRequest = unframe(&f).unwrap();
        assert_eq!(back.service, "svc");
        assert!(unframe::<HealthCheckResponse>(&[0, 0, 0]).is_err());
        assert!(unframe::<HealthCheckResponse>(&[1, 0, 0, 0, 0]).is_err());
        assert_eq!(percent_decode("a%20b%zz"), "a b%zz");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
