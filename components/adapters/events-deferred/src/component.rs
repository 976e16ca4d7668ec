//! The wasm glue: `events` taken and left to the gateway.

order_domain::bindings!("nano:orders/events-deferred");
order_domain::export_events!(EventsDeferred, hand_over);

use order_domain::{Error, Order};

/// Handed over: the order is in the outbox, and the gateway that placed it announces it once its
/// response is sent.
fn hand_over(_order: Order) -> Result<(), Error> {
    Ok(())
}
