//! The wasm half of [`crate::body`]: the body stream and a monotonic-clock timer polled together.

use std::time::Duration;

use spin_sdk::http::IncomingRequest;
use spin_sdk::variables;
use wasi::clocks::monotonic_clock;
use wasi::io::poll;
use wasi::io::streams::StreamError;

use crate::body::{self, BodyError, Collector};
use crate::Reply;

/// The deadline this component was given (the Spin variable [`body::BODY_TIMEOUT_VARIABLE`]), or
/// the 500 that says how it is misconfigured.
pub fn body_timeout() -> Result<Duration, Reply> {
    match variables::get(body::BODY_TIMEOUT_VARIABLE) {
        Ok(value) => body::body_timeout(Some(&value)),
        Err(variables::Error::Undefined(_)) => body::body_timeout(None),
        Err(e) => Err(Reply::problem(
            500,
            format!("Spin variable {}: {e}", body::BODY_TIMEOUT_VARIABLE),
        )),
    }
}

/// Reads the whole body of `request`, at most `limit` bytes, within `timeout` of this call.
///
/// Blocks the guest (no other task of it runs meanwhile), which is what an HTTP handler that needs
/// the body before it can do anything wants.
pub fn read_body(
    request: IncomingRequest,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, BodyError> {
    let incoming = request
        .consume()
        .map_err(|()| BodyError::Broken("the body was already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| BodyError::Broken("the body stream was already taken".into()))?;
    let timer =
        monotonic_clock::subscribe_duration(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    let readable = stream.subscribe();
    let mut body = Collector::new(limit);
    let outcome = loop {
        match stream.read(body.room().min(64 * 1024)) {
            Ok(chunk) if chunk.is_empty() => {
                // Nothing to read now: past the deadline that is the end, however much came
                // before (a trickle is as slow as silence); before it, wait for either.
                if timer.ready() {
                    break Err(BodyError::TimedOut { after: timeout });
                }
                poll::poll(&[&readable, &timer]);
            }
            Ok(chunk) => {
                if let Err(e) = body.push(&chunk) {
                    break Err(e);
                }
            }
            Err(StreamError::Closed) => break Ok(()),
            Err(StreamError::LastOperationFailed(e)) => {
                break Err(BodyError::Broken(e.to_debug_string()))
            }
        }
    };
    // Children before their parents: the pollable before its stream, the stream before its body.
    drop(readable);
    drop(timer);
    drop(stream);
    drop(incoming);
    outcome.map(|()| body.into_body())
}
