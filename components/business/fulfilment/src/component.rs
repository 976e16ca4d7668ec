//! The wasm glue: WIT calls onto the rules in this crate.

order_domain::bindings!("nano:orders/fulfilment-processor", store);

use bindings::exports::nano::orders::fulfilment::Guest;
use order_domain::{Error, OrderRecord, WitStore};

struct Fulfilment;

impl Guest for Fulfilment {
    fn fulfil(id: String) -> Result<OrderRecord, Error> {
        crate::fulfil(&WitStore, order_domain::now_millis(), &id)
    }
}

bindings::export!(Fulfilment with_types_in bindings);
