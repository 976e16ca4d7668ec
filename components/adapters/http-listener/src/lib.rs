//! `POST /fulfil` with a signed order message (`order-messages`) becomes one `fulfilment.fulfil`
//! call. 200 when fulfilled (or already was); a JSON error otherwise: 400 for a message that is
//! not an order, 401 for an unsigned one (v1), 403 for a bad signature, 404 for an unknown order,
//! 503 when the store failed or `message_key` is not set (the sender keeps the order `accepted`
//! and the sweeper sends it again), 405 for other methods, 408 when the message does not arrive
//! within the Spin variable `body_timeout_ms` (default 5 s).

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/http-listener",
    });
}

use api::nano::orders::fulfilment;
use api::nano::orders::types::Error;
use http_reply::Reply;
use order_messages::MessageKey;
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

/// Far above any order message; the body is read whole before it is decoded.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

#[http_component]
fn handle(request: IncomingRequest) -> Response {
    if !matches!(request.method(), Method::Post) {
        return response(
            Reply::problem(405, "POST an order message to /fulfil").with_header("allow", "POST"),
        );
    }
    let key = match MessageKey::from_variable(spin_sdk::variables::get("message_key")) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("cannot check order messages: {e}");
            return response(Reply::problem(503, "fulfilment cannot check messages now"));
        }
    };
    // Within a deadline (http_reply::body): a sender that holds its body back must not hold
    // this instance with it.
    let body = match http_reply::body_timeout().and_then(|timeout| {
        http_reply::read_body(request, MAX_MESSAGE_BYTES, timeout).map_err(|e| e.reply())
    }) {
        Ok(body) => body,
        Err(refused) => return response(refused),
    };
    let order = match order_messages::verify(&body, &key) {
        Ok(order) => order,
        Err(refused) => {
            eprintln!("refused a message on /fulfil: {refused}");
            return response(Reply::problem(refused.status(), refused.detail));
        }
    };
    response(match fulfilment::fulfil(&order.id) {
        Ok(_) => Reply::json(
            200,
            &serde_json::json!({ "id": order.id, "status": "fulfilled" }),
        ),
        Err(Error::Invalid(m)) => Reply::problem(400, m),
        Err(Error::NotFound(m)) => Reply::problem(404, m),
        Err(Error::Conflict(m)) => Reply::problem(409, m),
        Err(Error::Unavailable(m)) => Reply::problem(503, m),
    })
}

/// spin-sdk's response for `reply` (it sets the length itself).
fn response(reply: Reply) -> Response {
    let mut builder = Response::builder();
    builder.status(reply.status);
    for (name, value) in reply.all_headers() {
        if name != "content-length" {
            builder.header(name, value);
        }
    }
    builder.body(reply.body).build()
}
