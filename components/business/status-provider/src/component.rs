//! The wasm glue: WIT calls onto the rules in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/status-provider",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
            "nano:orders/store@0.1.0": order_domain::wit_store,
        },
    });
}

use bindings::exports::nano::orders::status::Guest;
use order_domain::{Error, OrderRecord, WitStore};

struct StatusProvider;

impl Guest for StatusProvider {
    fn get(id: String) -> Result<OrderRecord, Error> {
        crate::get(&WitStore, &id)
    }
}

bindings::export!(StatusProvider with_types_in bindings);
