//! The Spin glue: the gateway's [`Orders`] answered by the `intake` / `status` imports.

order_domain::bindings!("nano:orders/http-gateway");

use crate::edge::{self, Orders};
use bindings::nano::orders::intake::{self, OrderRequest};
use bindings::nano::orders::status;
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
