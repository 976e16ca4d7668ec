//! The wasm glue: `events` onto the `fulfilment` import.

order_domain::bindings!("nano:orders/events-local");
order_domain::export_events!(EventsLocal, announce);

use order_domain::{Error, Order};

fn announce(order: Order) -> Result<(), Error> {
    crate::announce(&order, bindings::nano::orders::fulfilment::fulfil)
}
