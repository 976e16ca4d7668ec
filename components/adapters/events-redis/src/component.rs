//! The wasm glue: `events.order-placed` as one Redis `PUBLISH`.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-publisher",
    with: {
        "nano:orders/types@0.1.0": order_domain::types,
    },
});

use exports::nano::orders::events::Guest;
use networked_publisher::{message, optional, required, unavailable};
use order_domain::{Error, Order};
use spin_sdk::redis::Connection;

struct EventsRedis;

impl Guest for EventsRedis {
    fn order_placed(order: Order) -> Result<(), Error> {
        let address =
            crate::with_password(&required("redis_address")?, &optional("redis_password"))
                .map_err(Error::Unavailable)?;
        let channel = required("orders_channel")?;
        let publish_failed = unavailable("Redis publish");
        Connection::open(&address)
            .map_err(&publish_failed)?
            .publish(&channel, &message(order))
            .map_err(publish_failed)
    }
}

export!(EventsRedis);
