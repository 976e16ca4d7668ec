//! The WASIp3 side of the gateway: reads a request, asks [`Orders`], returns the response, and
//! announces a placed order once the host has sent it, in the same instance. The component answers
//! [`Announce`] with its `intake` / `status` / `events` imports; a program that links the rules
//! statically (bench/fixtures/monolith-p3) answers it with the rules themselves, so both run this
//! same code.

mod api {
    wasip3::wit_bindgen::generate!({
        path: "../../../wit",
        inline: "package nano:http-edge-p3; world edge { import fermyon:spin/variables@2.0.0; }",
        world: "nano:http-edge-p3/edge",
        runtime_path: "wasip3::wit_bindgen::rt",
        generate_all,
    });
}

use std::time::Duration;

pub use api::fermyon::spin2_0_0::variables;
use futures_util::future::{self, Either};
use http_gateway::wire::{self, Call, MAX_BODY_BYTES};
use http_reply::body::{self as body_rules, BodyError, Collector};
use http_reply::Reply;
use order_domain::{Error, Order, OrderRecord, OrderStatus};
use wasip3::clocks::monotonic_clock;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response};
use wasip3::wit_bindgen::{self, StreamResult};
use wasip3::{wit_future, wit_stream};

/// Test-only: milliseconds to wait between sending the 202 and announcing the order (fulfilling it,
/// or publishing it), so that a test can see the order still `accepted` after its 202
/// (host/tests/order_app.rs, host/tests/networked.rs). Undeclared or empty: none.
const FULFIL_DELAY_VARIABLE: &str = "fulfil_delay_ms";

pub use http_gateway::wire::Orders;

/// What the gateway calls besides [`Orders`]: after the 202, `events.order-placed`.
pub trait Announce: Orders {
    fn announce(&self, order: &Order) -> Result<(), Error>;
}

/// Answers one request of the wire contract; a placed order is announced after the response.
pub async fn handle<O: Announce>(
    orders: &'static O,
    request: Request,
) -> Result<Response, ErrorCode> {
    let (reply, placed) = answer(orders, request).await;
    let (response, sent) = respond(reply)?;
    if let Some(record) = placed {
        // Runs after `handle` has returned the response: the instance lives until this task
        // ends, and the host has the 202 by the time `sent` resolves.
        wit_bindgen::spawn(async move {
            let _ = sent.await;
            announce_after_response(orders, &record).await;
        });
    }
    Ok(response)
}

/// The reply, and the order placed if this request placed (or replayed) one still `accepted`.
async fn answer(orders: &impl Orders, request: Request) -> (Reply, Option<OrderRecord>) {
    let method = match request.get_method() {
        Method::Get => "GET",
        Method::Post => "POST",
        _ => "other",
    };
    let path_and_query = request.get_path_with_query().unwrap_or_default();
    match wire::accept(method, &path_and_query) {
        Err(refused) => (refused, None),
        Ok(Call::Place) => match place(orders, request).await {
            Ok((reply, record)) => (reply, record),
            Err(refused) => (refused, None),
        },
        Ok(Call::LookUp(id)) => match orders.get(id) {
            Ok(record) => (wire::order(&record), None),
            Err(error) => (wire::from_error(error), None),
        },
    }
}

async fn place(
    orders: &impl Orders,
    request: Request,
) -> Result<(Reply, Option<OrderRecord>), Reply> {
    let headers = request.get_headers();
    let idempotency_key = wire::placement_headers(|name| headers.get(name))?;
    drop(headers);

    // At most MAX_BODY_BYTES, within the deadline: a client that holds its body back must not
    // hold this instance (which, on WASIp3, other requests share) with it.
    let timeout =
        body_rules::body_timeout(variable(body_rules::BODY_TIMEOUT_VARIABLE)?.as_deref())?;
    let body = read_body(request, MAX_BODY_BYTES, timeout)
        .await
        .map_err(|e| e.reply())?;
    let details = wire::details_from(&body)?;
    Ok(match orders.place(details, idempotency_key) {
        Ok(record) => {
            let pending = (record.status == OrderStatus::Accepted).then(|| record.clone());
            (wire::placed(&record), pending)
        }
        Err(error) => (wire::from_error(error), None),
    })
}

/// A Spin variable of this component: `None` when it is not declared.
fn variable(name: &str) -> Result<Option<String>, Reply> {
    match variables::get(name) {
        Ok(value) => Ok(Some(value)),
        Err(variables::Error::Undefined(_)) => Ok(None),
        Err(e) => Err(Reply::problem(500, format!("Spin variable {name}: {e:?}"))),
    }
}

/// The whole body, at most `limit` bytes, within `timeout` of this call.
async fn read_body(
    request: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, BodyError> {
    let (_done, done_reader) = wit_future::new(|| Ok(()));
    let (mut stream, _trailers) = Request::consume_body(request, done_reader);
    let reading = async move {
        let mut body = Collector::new(limit);
        loop {
            let room = usize::try_from(body.room())
                .unwrap_or(usize::MAX)
                .clamp(1, 64 * 1024);
            let (result, chunk) = stream.read(Vec::with_capacity(room)).await;
            match result {
                StreamResult::Complete(_) => body.push(&chunk)?,
                StreamResult::Dropped => return Ok(body.into_body()),
                StreamResult::Cancelled => {
                    return Err(BodyError::Broken("the body stream was cancelled".into()))
                }
            }
        }
    };
    let deadline = monotonic_clock::wait_for(u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX));
    match future::select(Box::pin(reading), Box::pin(deadline)).await {
        Either::Left((read, _)) => read,
        Either::Right(_) => Err(BodyError::TimedOut { after: timeout }),
    }
}

/// The response for `reply`, and the future that resolves once the host has sent it.
fn respond(
    reply: Reply,
) -> Result<(Response, wit_bindgen::FutureReader<Result<(), ErrorCode>>), ErrorCode> {
    let headers: Vec<(String, Vec<u8>)> = reply
        .all_headers()
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let headers = Fields::from_list(&headers)
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
    let (mut body_writer, body_reader) = wit_stream::new();
    let (trailers_writer, trailers_reader) = wit_future::new(|| Ok(None));
    drop(trailers_writer);
    let (response, sent) = Response::new(headers, Some(body_reader), trailers_reader);
    response
        .set_status_code(reply.status)
        .map_err(|()| ErrorCode::InternalError(Some(format!("status {}", reply.status))))?;
    let body = reply.body;
    wit_bindgen::spawn(async move {
        let unwritten = body_writer.write_all(body).await;
        debug_assert!(unwritten.is_empty(), "the host stopped reading the body");
    });
    Ok((response, sent))
}

/// Announces an order whose 202 has gone out: `events` fulfils it in process (the composed build)
/// or publishes it (the networked ones). A failure is left to the sweeper: the order is still in
/// the outbox, and announcing twice is harmless.
async fn announce_after_response(orders: &impl Announce, record: &OrderRecord) {
    let delay = variable(FULFIL_DELAY_VARIABLE)
        .ok()
        .flatten()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if delay > 0 {
        monotonic_clock::wait_for(delay.saturating_mul(1_000_000)).await;
    }
    let _ = orders.announce(&record.order);
}
