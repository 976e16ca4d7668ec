//! The Spin glue: the gateway's [`Orders`] answered by the `intake` / `status` imports.

mod api {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/http-gateway",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
        },
    });
}

use crate::edge::{self, Orders};
use api::nano::orders::intake::{self, OrderRequest};
use api::nano::orders::status;
use order_domain::{Error, OrderRecord};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

struct Imports;

impl Orders for Imports {
    fn place(
        &self,
        details: String,
        idempotency_key: Option<String>,
    ) -> Result<OrderRecord, Error> {
        intake::place(&OrderRequest {
            details,
            idempotency_key,
        })
    }

    fn get(&self, id: &str) -> Result<OrderRecord, Error> {
        status::get(id)
    }
}

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    edge::handle(request, out, &Imports).await;
}
