//! `POST /sweep` runs one sweep of the outbox (`outbox.sweep`) and answers its report as JSON:
//!
//! ```json
//! {"pending": 3, "waiting": 1, "announced": 1, "cleaned": 1, "failed": 0, "released_claims": 0,
//!  "grace_ms": 10000}
//! ```
//!
//! It is what a Kubernetes CronJob (`curl -X POST`) or `cargo xtask up` calls every minute. The
//! grace period is the Spin variable `sweep_grace_ms`. If the Spin variable `sweep_token` is not
//! empty, a request must carry `Authorization: Bearer <token>` (401 otherwise): a sweep is harmless
//! to repeat, but each one reads every key of the store and may publish, so on a shared network it
//! should not be open to anyone who can reach the app.

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

#[http_component]
fn handle(request: IncomingRequest, out: ResponseOutparam) {
    http_reply::send(out, answer(&request));
}

fn answer(request: &IncomingRequest) -> Reply {
    if !matches!(request.method(), Method::Post) {
        return Reply::problem(405, "POST /sweep runs a sweep").with_header("allow", "POST");
    }
    let token = variables::get("sweep_token").unwrap_or_default();
    if !token.is_empty() {
        let expected = format!("Bearer {token}");
        let sent = request.headers().get("authorization");
        if sent.len() != 1 || !constant_time_eq(&sent[0], expected.as_bytes()) {
            return Reply::problem(401, "POST /sweep needs Authorization: Bearer <sweep_token>")
                .with_header("www-authenticate", "Bearer");
        }
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    match outbox::sweep(now, grace_ms) {
        Ok(r) => Reply::json(
            200,
            &json!({
                "pending": r.pending,
                "waiting": r.waiting,
                "announced": r.announced,
                "cleaned": r.cleaned,
                "failed": r.failed,
                "released_claims": r.released_claims,
                "grace_ms": grace_ms,
            }),
        ),
        Err(Error::Unavailable(m)) => Reply::problem(503, m),
        Err(Error::Invalid(m) | Error::NotFound(m) | Error::Conflict(m)) => Reply::problem(500, m),
    }
}

/// Compares without an early exit, so the time taken says nothing about how much of a guess was
/// right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
