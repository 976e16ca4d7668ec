//! The wasm glue: `events.order-placed` as one MQTT publish, on the instance's kept connection.

use crate::with_client_id;

order_domain::bindings!("nano:orders/events-publisher");
order_domain::export_events!(EventsMqtt, publish);

use networked_publisher::{message, optional, required, send_kept, ConnectionCache};
use order_domain::{Error, Order};
use spin_sdk::mqtt::{Connection, Qos};

/// Seconds. Nothing drives the connection between publishes (no pings), so an idle kept
/// connection may be closed by the broker: the cache then opens a new one.
const KEEP_ALIVE_SECS: u64 = 30;

thread_local! {
    static CONNECTION: ConnectionCache<Connection> = ConnectionCache::default();
}

fn publish(order: Order) -> Result<(), Error> {
    let payload = message(&order)?;
    let address = required("mqtt_address")?;
    let topic = required("orders_topic")?;
    // Both empty for a broker that lets anyone in.
    let (username, password) = (optional("mqtt_username"), optional("mqtt_password"));
    let target = format!("{address}\n{username}\n{password}");
    let open = || {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let address = with_client_id(&address, &unique);
        Connection::open(&address, &username, &password, KEEP_ALIVE_SECS)
    };
    let publish = |connection: &Connection| connection.publish(&topic, &payload, Qos::AtLeastOnce);
    send_kept(&CONNECTION, "MQTT publish", &target, open, publish)
}
