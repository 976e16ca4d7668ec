//! The wasm glue: WIT calls onto the rules in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/receiver",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
            "nano:orders/store@0.1.0": order_domain::wit_store,
        },
    });
}

use crate::{intake, Events};
use bindings::exports::nano::orders::intake::{Guest, OrderRequest};
use bindings::nano::orders::events;
use order_domain::{Error, Order, OrderRecord, WitStore};

struct WitEvents;

impl Events for WitEvents {
    fn order_placed(&self, order: &Order) -> Result<(), Error> {
        events::order_placed(order)
    }
}

struct Receiver;

impl Guest for Receiver {
    fn place(request: OrderRequest) -> Result<OrderRecord, Error> {
        intake::place_now(
            &WitStore,
            &WitEvents,
            request.details,
            request.idempotency_key,
        )
    }
}

bindings::export!(Receiver with_types_in bindings);
