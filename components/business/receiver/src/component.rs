//! The wasm glue: WIT calls onto the rules in this crate.

order_domain::bindings!("nano:orders/receiver", store);
order_domain::wit_events!();

use bindings::exports::nano::orders::intake::{Guest, OrderRequest};
use order_domain::{Error, OrderRecord, WitStore};

struct Receiver;

impl Guest for Receiver {
    fn place(request: OrderRequest) -> Result<OrderRecord, Error> {
        crate::intake::place_now(
            &WitStore,
            &WitEvents,
            request.details,
            request.idempotency_key,
        )
    }
}

bindings::export!(Receiver with_types_in bindings);
