//! The wasm glue: `events.order-placed` as one Redis `PUBLISH`, on the instance's kept connection.

order_domain::bindings!("nano:orders/events-publisher");
order_domain::export_events!(EventsRedis, publish);

use networked_publisher::{message, optional, required, send_kept, ConnectionCache};
use order_domain::{Error, Order};
use spin_sdk::redis::Connection;

thread_local! {
    static CONNECTION: ConnectionCache<Connection> = ConnectionCache::default();
}

fn publish(order: Order) -> Result<(), Error> {
    let payload = message(&order)?;
    let address = crate::with_password(&required("redis_address")?, &optional("redis_password"))
        .map_err(Error::Unavailable)?;
    let channel = required("orders_channel")?;
    send_kept(
        &CONNECTION,
        "Redis publish",
        &address,
        || Connection::open(&address),
        |connection| connection.publish(&channel, &payload),
    )
}
