//! Reading a request body with a deadline.
//!
//! Why: a request whose head is complete and whose body never comes holds a guest instance for as
//! long as the guest waits for the body; Spin 3.6.3 sets no limit, so a few hundred such clients
//! take every slot of its pooling allocator and every other request gets an empty 500. The guest
//! therefore waits for the body and a monotonic-clock timer together (`wasi:io/poll`, in `read`),
//! and answers 408 once the deadline passes: the instance is free again whatever the host does.
//!
//! This module is the part without wasm: the deadline's setting, the size limit, the answers.

use std::time::Duration;

use crate::Reply;

/// The Spin variable that sets the deadline, in milliseconds. A manifest that does not declare
/// it (or leaves it empty) gets [`DEFAULT_BODY_TIMEOUT`].
pub const BODY_TIMEOUT_VARIABLE: &str = "body_timeout_ms";

/// Long enough for a 64 KiB body on a slow mobile link, short enough that a client holding its
/// body back frees its instance within seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// The deadline from the variable's value: `None` when the variable is not declared.
pub fn body_timeout(value: Option<&str>) -> Result<Duration, Reply> {
    let value = value.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Ok(DEFAULT_BODY_TIMEOUT);
    }
    match value.parse::<u64>() {
        Ok(0) => Err(misconfigured("0 would refuse every body")),
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(e) => Err(misconfigured(&format!(
            "{value:?} is not a number of milliseconds: {e}"
        ))),
    }
}

fn misconfigured(why: &str) -> Reply {
    Reply::problem(500, format!("Spin variable {BODY_TIMEOUT_VARIABLE}: {why}"))
}

/// Why a body could not be read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than `limit` bytes.
    TooLarge { limit: usize },
    /// Not all of it within the deadline.
    TimedOut { after: Duration },
    /// The stream broke off (the client went away, say).
    Broken(String),
}

impl BodyError {
    /// 413, 408 or 400, with a JSON error.
    pub fn reply(&self) -> Reply {
        match self {
            BodyError::TooLarge { limit } => {
                Reply::problem(413, format!("the body is larger than {limit} bytes"))
            }
            BodyError::TimedOut { after } => Reply::problem(
                408,
                format!(
                    "the request body did not arrive within {} ms; send it at once",
                    after.as_millis()
                ),
            ),
            BodyError::Broken(why) => {
                Reply::problem(400, format!("could not read the request body: {why}"))
            }
        }
    }
}

/// The bytes of a body so far, never more than its limit.
#[derive(Debug)]
pub struct Collector {
    limit: usize,
    body: Vec<u8>,
}

impl Collector {
    pub fn new(limit: usize) -> Collector {
        Collector {
            limit,
            body: Vec::new(),
        }
    }

    /// Adds a chunk; refuses one that would take the body over the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        if self.body.len() + chunk.len() > self.limit {
            return Err(BodyError::TooLarge { limit: self.limit });
        }
        self.body.extend_from_slice(chunk);
        Ok(())
    }

    /// How many more bytes are worth asking the stream for: one over the limit shows it is
    /// exceeded without reading a large chunk past it.
    pub fn room(&self) -> u64 {
        (self.limit - self.body.len()) as u64 + 1
    }

    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_deadline_comes_from_the_variable_or_the_default() {
        let cases: &[(Option<&str>, Result<u64, &str>)] = &[
            (None, Ok(5000)),
            (Some(""), Ok(5000)),
            (Some("  "), Ok(5000)),
            (Some("2500"), Ok(2500)),
            (Some(" 100 "), Ok(100)),
            (Some("0"), Err("0 would refuse every body")),
            (Some("5s"), Err("not a number of milliseconds")),
            (Some("-1"), Err("not a number of milliseconds")),
        ];
        for (value, want) in cases {
            match (body_timeout(*value), want) {
                (Ok(got), Ok(ms)) => assert_eq!(got, Duration::from_millis(*ms), "{value:?}"),
                (Err(reply), Err(needle)) => {
                    assert_eq!(reply.status, 500, "{value:?}");
                    let error = reply.json_body().unwrap()["error"].to_string();
                    assert!(error.contains(BODY_TIMEOUT_VARIABLE), "{error}");
                    assert!(error.contains(needle), "{value:?}: {error}");
                }
                (got, want) => panic!("{value:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn each_failure_has_its_status_and_a_json_error() {
        let cases = [
            (
                BodyError::TooLarge { limit: 10 },
                413,
                "larger than 10 bytes",
            ),
            (
                BodyError::TimedOut {
                    after: Duration::from_millis(5000),
                },
                408,
                "within 5000 ms",
            ),
            (BodyError::Broken("reset".into()), 400, "reset"),
        ];
        for (error, status, needle) in cases {
            let reply = error.reply();
            assert_eq!(reply.status, status, "{error:?}");
            assert_eq!(
                reply.header("content-type").as_deref(),
                Some("application/json")
            );
            let message = reply.json_body().unwrap()["error"].clone();
            assert!(message.as_str().unwrap().contains(needle), "{message}");
        }
        assert_eq!(
            BodyError::TooLarge { limit: 3 }.reply().json_body(),
            Some(json!({"error": "the body is larger than 3 bytes"}))
        );
    }

    #[test]
    fn a_body_may_fill_its_limit_exactly_and_not_one_byte_more() {
        let mut body = Collector::new(5);
        assert_eq!(body.room(), 6);
        body.push(b"ab").unwrap();
        assert_eq!(body.room(), 4);
        body.push(b"").unwrap();
        body.push(b"cde").unwrap();
        assert_eq!(body.room(), 1, "one more byte shows the body is too large");
        assert_eq!(
            body.push(b"f"),
            Err(BodyError::TooLarge { limit: 5 }),
            "one over"
        );
        assert_eq!(body.into_body(), b"abcde");
        let mut big = Collector::new(4);
        assert_eq!(big.push(b"abcdefgh"), Err(BodyError::TooLarge { limit: 4 }));
    }
}
