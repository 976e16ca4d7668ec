//! `POST /fulfil` with an order message (the JSON of `order-messages`) becomes one
//! `fulfilment.fulfil` call. 200 when fulfilled (or already was), 400 for a message that is
//! not an order, 404 for an unknown order, 503 when the store failed (the sender then
//! withdraws the order), 405 for other methods, 408 (JSON) when the message does not arrive within
//! the Spin variable `body_timeout_ms` (default 5 s).

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/http-listener",
    });
}

use api::nano::orders::fulfilment;
use api::nano::orders::types::Error;
use spin_sdk::http::{IncomingRequest, Method, Response};
use spin_sdk::http_component;

/// Far above any order message; the body is read whole before it is decoded.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

#[http_component]
fn handle(request: IncomingRequest) -> Response {
    if !matches!(request.method(), Method::Post) {
        return Response::builder()
            .status(405)
            .header("allow", "POST")
            .body("POST an order message to /fulfil")
            .build();
    }
    // Within a deadline (http_reply::body): a sender that holds its body back must not hold
    // this instance with it.
    let body = match http_reply::body_timeout().and_then(|timeout| {
        http_reply::read_body(request, MAX_MESSAGE_BYTES, timeout).map_err(|e| e.reply())
    }) {
        Ok(body) => body,
        Err(refused) => {
            return Response::builder()
                .status(refused.status)
                .header("content-type", "application/json")
                .body(refused.body)
                .build()
        }
    };
    let order = match order_messages::decode(&body) {
        Ok(order) => order,
        Err(refused) => return Response::new(400, refused.0),
    };
    match fulfilment::fulfil(&order.id) {
        Ok(_) => Response::new(200, Vec::<u8>::new()),
        Err(Error::Invalid(m)) => Response::new(400, m),
        Err(Error::NotFound(m)) => Response::new(404, m),
        Err(Error::Conflict(m)) => Response::new(409, m),
        Err(Error::Unavailable(m)) => Response::new(503, m),
    }
}
