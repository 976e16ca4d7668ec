//! The wasm glue: WIT calls onto the rules in this crate.

order_domain::bindings!("nano:orders/status-provider", store);

use bindings::exports::nano::orders::status::Guest;
use order_domain::{Error, OrderRecord, WitStore};

struct StatusProvider;

impl Guest for StatusProvider {
    fn get(id: String) -> Result<OrderRecord, Error> {
        crate::get(&WitStore, &id)
    }
}

bindings::export!(StatusProvider with_types_in bindings);
