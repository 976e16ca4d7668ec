//! `POST /fulfil` with a signed order message (`order-messages`) becomes one `fulfilment.fulfil`
//! call. 200 when fulfilled (or already was); a JSON error otherwise: 400 for a message that is
//! not an order, 401 for an unsigned one (v1), 403 for a bad signature, 404 for an unknown order,
//! 503 when the store failed or `message_key` is not set (the sender keeps the order `accepted`
//! and the sweeper sends it again), 405 for other methods.

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
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn handle(request: Request) -> Response {
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
    let order = match order_messages::verify(request.body(), &key) {
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
