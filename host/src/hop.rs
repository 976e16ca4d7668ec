//! Opt-in hop timing for the benchmark (`bench/`, issue 5): the instants at which a message
//! leaves a component (outbound MQTT/Redis `publish`, an outbound HTTP request) and reaches the
//! trigger on the other side, on the process's one monotonic clock.
//!
//! Nothing is recorded unless a sink was installed with [`install`], which only the benchmark's
//! harness does (it runs both apps of a networked shape in one process). Without a sink each
//! probe is one atomic load.

use std::sync::OnceLock;
use std::time::Instant;

/// Where a message is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Point {
    /// The host side of `publish` (or an outbound HTTP request) was entered.
    Sent,
    /// The trigger got the message from the broker (or the HTTP request arrived).
    Received,
    /// The handler instance exists and its export is about to be called.
    HandlerStart,
    /// The handler's export returned.
    HandlerEnd,
}

/// Receives the probes. `key` identifies one message: its payload for MQTT and Redis, the
/// request path for HTTP.
pub trait HopSink: Send + Sync {
    fn record(&self, point: Point, key: &[u8], at: Instant);
}

static SINK: OnceLock<Box<dyn HopSink>> = OnceLock::new();

/// Installs the process-wide sink; returns false if one was already installed.
pub fn install(sink: Box<dyn HopSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Records `point` for the message `key`, if a sink is installed.
#[inline]
pub fn record(point: Point, key: &[u8]) {
    if let Some(sink) = SINK.get() {
        sink.record(point, key, Instant::now());
    }
}
