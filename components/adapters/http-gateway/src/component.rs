//! The Spin glue: reads the request, calls `intake` / `status`, sends the reply in one piece.

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/http-gateway",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
        },
    });
}

use crate::wire::{self, Route, MAX_BODY_BYTES};
use api::nano::orders::intake::{self, OrderRequest};
use api::nano::orders::status;
use futures::StreamExt;
use http_reply::Reply;
use spin_sdk::http::{IncomingRequest, Method, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    http_reply::send(out, answer(request).await);
}

async fn answer(request: IncomingRequest) -> Reply {
    let method = match request.method() {
        Method::Get => "GET",
        Method::Post => "POST",
        _ => "other",
    };
    let path_and_query = request.path_with_query().unwrap_or_default();
    let route = wire::route(method, &path_and_query);
    if let Some(refused) = wire::refusal(&route) {
        return refused;
    }
    match route {
        Route::Place => place(request).await.unwrap_or_else(|refused| refused),
        Route::LookUp(id) => match status::get(id) {
            Ok(record) => wire::order(&record),
            Err(error) => wire::from_error(error),
        },
        _ => unreachable!("refused above"),
    }
}

async fn place(request: IncomingRequest) -> Result<Reply, Reply> {
    let headers = request.headers();
    wire::check_content_type(&headers.get("content-type"))?;
    wire::check_declared_length(&headers.get("content-length"))?;
    let idempotency_key = wire::single_header(&headers.get("idempotency-key"), "Idempotency-Key")?;
    drop(headers);

    let body = read_body(request).await?;
    let details = wire::details_from(&body)?;
    Ok(
        match intake::place(&OrderRequest {
            details,
            idempotency_key,
        }) {
            Ok(record) => wire::placed(&record),
            Err(error) => wire::from_error(error),
        },
    )
}

/// Reads at most `MAX_BODY_BYTES`, whatever Content-Length claimed (or if it was absent).
async fn read_body(request: IncomingRequest) -> Result<Vec<u8>, Reply> {
    let mut stream = request.into_body_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(wire::unreadable_body)?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(wire::too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
