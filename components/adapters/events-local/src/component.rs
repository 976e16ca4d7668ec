//! The wasm glue: `events` onto the `fulfilment` import.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-local",
    with: {
        "nano:orders/types@0.1.0": order_domain::types,
    },
});

use exports::nano::orders::events::Guest;
use nano::orders::fulfilment;
use order_domain::{Error, Order};

struct EventsLocal;

impl Guest for EventsLocal {
    fn order_placed(order: Order) -> Result<(), Error> {
        crate::announce(&order, fulfilment::fulfil)
    }
}

export!(EventsLocal);
