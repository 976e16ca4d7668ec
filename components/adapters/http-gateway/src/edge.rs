//! The Spin side of the gateway: reads a request, asks [`Orders`], sends the reply in one piece.
//! The component answers [`Orders`] with its `intake` / `status` imports; a program that links the
//! business rules statically (bench/fixtures/monolith) answers it with the rules themselves.

pub use crate::wire::Orders;
use crate::wire::{self, Call, MAX_BODY_BYTES};
use http_reply::Reply;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};

/// Answers one request of the wire contract (README, "The wire contract").
pub async fn handle(request: IncomingRequest, out: ResponseOutparam, orders: &impl Orders) {
    http_reply::send(out, answer(request, orders).await);
}

async fn answer(request: IncomingRequest, orders: &impl Orders) -> Reply {
    let method = match request.method() {
        Method::Get => "GET",
        Method::Post => "POST",
        _ => "other",
    };
    let path_and_query = request.path_with_query().unwrap_or_default();
    match wire::accept(method, &path_and_query) {
        Err(refused) => refused,
        Ok(Call::Place) => place(request, orders)
            .await
            .unwrap_or_else(|refused| refused),
        Ok(Call::LookUp(id)) => match orders.get(id) {
            Ok(record) => wire::order(&record),
            Err(error) => wire::from_error(error),
        },
    }
}

async fn place(request: IncomingRequest, orders: &impl Orders) -> Result<Reply, Reply> {
    let headers = request.headers();
    let idempotency_key = wire::placement_headers(|name| headers.get(name))?;
    drop(headers);

    // At most MAX_BODY_BYTES whatever Content-Length claimed (or if it was absent), and within the
    // deadline: a client that holds its body back must not hold this instance with it.
    let timeout = http_reply::body_timeout()?;
    let body = http_reply::read_body(request, MAX_BODY_BYTES, timeout).map_err(|e| e.reply())?;
    let details = wire::details_from(&body)?;
    Ok(match orders.place(details, idempotency_key) {
        Ok(record) => wire::placed(&record),
        Err(error) => wire::from_error(error),
    })
}
