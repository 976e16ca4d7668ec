//! The wasm glue: `wasi:http/handler@0.3.0` (from the wasip3 crate) onto the `intake`, `status` and
//! `events` imports, through [`crate::edge`].

mod api {
    wasip3::wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/http-gateway-p3",
        runtime_path: "wasip3::wit_bindgen::rt",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
            "fermyon:spin/variables@2.0.0": crate::edge::variables,
        },
        generate_all,
    });
}

use api::nano::orders::{events, intake, status};
use order_domain::{Error, Order};
use wasip3::http::types::{ErrorCode, Request, Response};

struct Gateway;

wasip3::http::service::export!(Gateway);

impl wasip3::exports::http::handler::Guest for Gateway {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        crate::edge::handle(&Imports, request).await
    }
}

/// The edge's calls answered by the components this one is composed with: `events` fulfils in
/// process (the composed build) or publishes (the networked ones).
struct Imports;

http_gateway::orders_from_imports!(Imports, intake, status);

impl crate::edge::Announce for Imports {
    fn announce(&self, order: &Order) -> Result<(), Error> {
        events::order_placed(order)
    }
}
