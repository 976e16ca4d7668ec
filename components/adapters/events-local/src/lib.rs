//! "Order placed" as a plain call into fulfilment: no broker, no serialization, no network.
//! The call returns when fulfilment is done, so in the composed app an order is already
//! fulfilled when its 202 goes out.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-local",
});

use exports::nano::orders::events::Guest;
use nano::orders::fulfilment;
use nano::orders::types::{Error, Order};

struct EventsLocal;

impl Guest for EventsLocal {
    fn order_placed(order: Order) -> Result<(), Error> {
        // Whatever fulfilment says, the announcement did not go through: the receiver then
        // withdraws the order, so the client sees one clear failure instead of a stuck order.
        fulfilment::fulfil(&order.id).map(drop).map_err(|e| {
            let why = match e {
                Error::Invalid(m)
                | Error::NotFound(m)
                | Error::Conflict(m)
                | Error::Unavailable(m) => m,
            };
            Error::Unavailable(format!("fulfilment refused order {}: {why}", order.id))
        })
    }
}

export!(EventsLocal);
