//! The Spin glue: the gateway's [`Orders`](crate::wire::Orders) answered by the `intake` /
//! `status` imports.

order_domain::bindings!("nano:orders/http-gateway");

use crate::edge;
use bindings::nano::orders::{intake, status};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

struct Imports;

crate::orders_from_imports!(Imports, intake, status);

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    edge::handle(request, out, &Imports).await;
}
