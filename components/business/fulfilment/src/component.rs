//! The wasm glue: WIT calls onto the rules in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/fulfilment-processor",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
            "nano:orders/store@0.1.0": order_domain::wit_store,
        },
    });
}

use bindings::exports::nano::orders::fulfilment::Guest;
use order_domain::{Error, OrderRecord, WitStore};

struct Fulfilment;

impl Guest for Fulfilment {
    fn fulfil(id: String) -> Result<OrderRecord, Error> {
        crate::fulfil(&WitStore, order_domain::now_millis(), &id)
    }
}

bindings::export!(Fulfilment with_types_in bindings);
