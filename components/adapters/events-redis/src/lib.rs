//! "Order placed" published to a Redis channel. Redis pub/sub is at-most-once: a subscriber that
//! is not connected at that moment never sees the message (see the README).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-publisher",
});

use exports::nano::orders::events::Guest;
use nano::orders::types::{Error, Order};
use order_messages::PlacedOrder;
use spin_sdk::redis::Connection;
use spin_sdk::variables;

struct EventsRedis;

impl Guest for EventsRedis {
    fn order_placed(order: Order) -> Result<(), Error> {
        let address = variable("redis_address")?;
        let channel = variable("orders_channel")?;
        let payload = order_messages::encode(&PlacedOrder {
            id: order.id,
            details: order.details,
            placed_at: order.placed_at,
        });
        let unavailable =
            |e: spin_sdk::redis::Error| Error::Unavailable(format!("Redis publish failed: {e}"));
        Connection::open(&address)
            .map_err(unavailable)?
            .publish(&channel, &payload)
            .map_err(unavailable)
    }
}

fn variable(name: &str) -> Result<String, Error> {
    variables::get(name).map_err(|e| Error::Unavailable(format!("Spin variable {name}: {e}")))
}

export!(EventsRedis);
