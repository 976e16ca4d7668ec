//! What the HTTP adapters share: a request body read with a deadline ([`body`]; `read_body`,
//! wasm only), and a response built in one piece and sent in one piece ([`Reply`]).
//!
//! Why: Spin's HTTP trigger does not set `TCP_NODELAY`. A response that reaches the socket in two
//! writes (the head first, then the body; or the body, then the last chunk of a chunked body) on a
//! keep-alive connection waits for the client's delayed ACK of the first write before Nagle lets
//! the second go: ~40 ms per request instead of well under one. spin-sdk's `Response` path hands
//! the response head to the host before it writes the body, so whether the two meet in one write is
//! a race the guest usually loses. [`Reply`] therefore always carries `content-length` (no chunked
//! encoding, so no trailing chunk), and `send` (wasm only) writes and finishes the whole body
//! *before* it hands the response to the host, which then finds head and body ready together.

use serde_json::Value;

/// Status, headers and the whole body of one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// `status` with `body` as JSON.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with `{"error": message}`: how every adapter reports a problem.
    pub fn problem(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &serde_json::json!({ "error": message.into() }))
    }

    /// Adds a header (a name already there is replaced). `content-length` is not settable: it is
    /// always the body's length.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        let name = name.to_ascii_lowercase();
        assert_ne!(name, "content-length", "set from the body");
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value.into()));
        self
    }

    /// The header with this (lowercase) name, if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.all_headers()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every header as it goes on the wire, `content-length` included.
    pub fn all_headers(&self) -> Vec<(String, String)> {
        let mut all = self.headers.clone();
        all.push(("content-length".into(), self.body.len().to_string()));
        all
    }

    /// The body as JSON (tests and logs).
    pub fn json_body(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

pub mod body;
pub use body::BodyError;

#[cfg(all(target_arch = "wasm32", feature = "spin"))]
mod read;
#[cfg(all(target_arch = "wasm32", feature = "spin"))]
pub use read::{body_timeout, read_body};
#[cfg(all(target_arch = "wasm32", feature = "spin"))]
mod send;
#[cfg(all(target_arch = "wasm32", feature = "spin"))]
pub use send::send;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_reply_carries_its_exact_content_length() {
        for reply in [
            Reply::json(200, &json!({"id": "x", "details": "ünïcode"})),
            Reply::problem(404, "no order"),
            Reply::problem(405, "").with_header("Allow", "POST"),
            Reply::json(202, &json!({})).with_header("location", "/order/x"),
        ] {
            let lengths: Vec<_> = reply
                .all_headers()
                .into_iter()
                .filter(|(n, _)| n == "content-length")
                .collect();
            assert_eq!(
                lengths,
                vec![("content-length".to_string(), reply.body.len().to_string())]
            );
            assert!(reply
                .all_headers()
                .iter()
                .all(|(n, _)| n != "transfer-encoding"));
        }
    }

    #[test]
    fn problems_are_json_with_an_error_message() {
        let reply = Reply::problem(400, "bad");
        assert_eq!(
            reply.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(reply.json_body(), Some(json!({"error": "bad"})));
    }

    #[test]
    fn headers_are_lowercase_and_set_once() {
        let reply = Reply::problem(405, "x")
            .with_header("Allow", "GET")
            .with_header("allow", "POST");
        let allows: Vec<_> = reply
            .all_headers()
            .into_iter()
            .filter(|(n, _)| n == "allow")
            .collect();
        assert_eq!(allows, vec![("allow".to_string(), "POST".to_string())]);
    }

    #[test]
    #[should_panic(expected = "set from the body")]
    fn content_length_cannot_be_set_by_hand() {
        let _ = Reply::problem(400, "x").with_header("Content-Length", "3");
    }
}
