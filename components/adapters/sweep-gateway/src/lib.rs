//! `POST /sweep` runs one sweep of the outbox (`outbox.sweep`) and answers its report as JSON:
//!
//! ```json
//! {"pending": 3, "waiting": 1, "announced": 1, "cleaned": 1, "failed": 0, "released_claims": 0,
//!  "deferred": 0, "backed_off": 0, "skipped": 0, "purged": 0, "out_of_time": false,
//!  "grace_ms": 10000, "retention_ms": 604800000}
//! ```
//!
//! It is what a Kubernetes CronJob (`curl -X POST`) or `cargo xtask up` calls every minute. The
//! grace period is the Spin variable `sweep_grace_ms`, the retention of fulfilled orders
//! `retention_ms` (default 7 days; 0 keeps them for ever).
//!
//! Closed by default: a request must carry `Authorization: Bearer <sweep_token>` (401 otherwise),
//! and while the Spin variable `sweep_token` is empty or missing every sweep is refused with 403
//! (a sweep may publish and removes old orders: it is not for anyone who can reach the app).
//! A sweep while another runs answers 409.

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/sweep-gateway",
    });
}

use api::nano::orders::outbox;
use api::nano::orders::types::Error;
use http_reply::Reply;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;
use spin_sdk::variables;

/// How long fulfilled orders are kept when the app does not say (`retention_ms`).
const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    http_reply::send(out, answer(&request));
}

fn answer(request: &IncomingRequest) -> Reply {
    if !matches!(request.method(), Method::Post) {
        return Reply::problem(405, "POST /sweep runs a sweep").with_header("allow", "POST");
    }
    let token = variables::get("sweep_token").unwrap_or_default();
    if token.trim().is_empty() {
        return Reply::problem(
            403,
            "POST /sweep is closed: the Spin variable sweep_token is not configured \
             (set SPIN_VARIABLE_SWEEP_TOKEN, or a secret)",
        );
    }
    let expected = format!("Bearer {token}");
    let sent = request.headers().get("authorization");
    if sent.len() != 1 || !constant_time_eq(&sent[0], expected.as_bytes()) {
        return Reply::problem(401, "POST /sweep needs Authorization: Bearer <sweep_token>")
            .with_header("www-authenticate", "Bearer");
    }
    let grace_ms = match variables::get("sweep_grace_ms").map(|v| v.trim().parse::<u64>()) {
        Ok(Ok(ms)) => ms,
        Ok(Err(e)) => {
            return Reply::problem(
                500,
                format!("Spin variable sweep_grace_ms is not a number of milliseconds: {e}"),
            )
        }
        Err(e) => return Reply::problem(500, format!("Spin variable sweep_grace_ms: {e}")),
    };
    let retention_ms = match variables::get("retention_ms").map(|v| v.trim().parse::<u64>()) {
        Ok(Ok(ms)) => ms,
        Err(variables::Error::Undefined(_)) => DEFAULT_RETENTION_MS,
        Ok(Err(e)) => {
            return Reply::problem(
                500,
                format!("Spin variable retention_ms is not a number of milliseconds: {e}"),
            )
        }
        Err(e) => return Reply::problem(500, format!("Spin variable retention_ms: {e}")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let settings = outbox::SweepSettings {
        grace_ms,
        retention_ms,
    };
    match outbox::sweep(now, settings) {
        Ok(r) => Reply::json(
            200,
            &json!({
                "pending": r.pending,
                "waiting": r.waiting,
                "announced": r.announced,
                "cleaned": r.cleaned,
                "failed": r.failed,
                "released_claims": r.released_claims,
                "deferred": r.deferred,
                "backed_off": r.backed_off,
                "skipped": r.skipped,
                "purged": r.purged,
                "out_of_time": r.out_of_time,
                "grace_ms": grace_ms,
                "retention_ms": retention_ms,
            }),
        ),
        Err(Error::Conflict(m)) => Reply::problem(409, m).with_header("retry-after", "10"),
        Err(Error::Unavailable(m)) => Reply::problem(503, m),
        Err(Error::Invalid(m) | Error::NotFound(m)) => Reply::problem(500, m),
    }
}

/// Compares without an early exit, so the time taken says nothing about how much of a guess was
/// right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
