//! HTTP helpers shared by the end-to-end tests: JSON replies, the problem shape of a 4xx, and a
//! raw HTTP/1.1 exchange for what a normal client cannot send (no `Host`, pipelining).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

/// The body of a reply that must be JSON (`content-type: application/json`).
pub async fn json_body(response: reqwest::Response) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "body: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts a 4xx with `{"error": "..."}` whose message mentions `needle`.
pub fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, needle: &str) {
    assert_eq!(status, expected, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{message:?} should mention {needle:?}"
    );
}

/// `GET path` with reqwest: status and body text.
pub async fn get_text(base: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base}{path}"))
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Writes `request` as is and reads until the server closes or `wait` passes without a byte.
/// Returns what came back (possibly nothing) and whether the server closed the connection.
pub async fn raw_exchange(addr: SocketAddr, request: Vec<u8>, wait: Duration) -> (String, bool) {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(wait)).unwrap();
        let _ = stream.write_all(&request);
        let mut reply = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        let closed = loop {
            match stream.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break false
                }
                Err(_) => break true,
            }
        };
        (String::from_utf8_lossy(&reply).into_owned(), closed)
    })
    .await
    .unwrap()
}

/// The status codes of the responses in a raw reply, in order.
pub fn statuses(reply: &str) -> Vec<u16> {
    // A response may follow the previous body with no line break in between.
    reply
        .match_indices("HTTP/1.")
        .filter_map(|(at, _)| reply.get(at + 9..at + 12)?.parse().ok())
        .collect()
}
