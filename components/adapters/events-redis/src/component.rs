//! The wasm glue: `events.order-placed` as one Redis `PUBLISH`, on the instance's kept connection.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-publisher",
    with: {
        "nano:orders/types@0.1.0": order_domain::types,
    },
});

use exports::nano::orders::events::Guest;
use networked_publisher::{message, optional, required, unavailable, ConnectionCache};
use order_domain::{Error, Order};
use spin_sdk::redis::Connection;

thread_local! {
    static CONNECTION: ConnectionCache<Connection> = ConnectionCache::default();
}

struct EventsRedis;

impl Guest for EventsRedis {
    fn order_placed(order: Order) -> Result<(), Error> {
        let payload = message(&order)?;
        let address =
            crate::with_password(&required("redis_address")?, &optional("redis_password"))
                .map_err(Error::Unavailable)?;
        let channel = required("orders_channel")?;
        CONNECTION
            .with(|kept| {
                kept.send(
                    &address,
                    || Connection::open(&address),
                    |connection| connection.publish(&channel, &payload),
                )
            })
            .map_err(unavailable("Redis publish"))
    }
}

export!(EventsRedis);
