//! The wasm glue: `events.order-placed` as one MQTT publish.

use crate::with_client_id;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/events-publisher",
});

use exports::nano::orders::events::Guest;
use nano::orders::types::{Error, Order};
use order_messages::PlacedOrder;
use spin_sdk::mqtt::{Connection, Qos};
use spin_sdk::variables;

/// Seconds; the connection lives for one publish, so this only has to outlast it.
const KEEP_ALIVE_SECS: u64 = 30;

struct EventsMqtt;

impl Guest for EventsMqtt {
    fn order_placed(order: Order) -> Result<(), Error> {
        let address = variable("mqtt_address")?;
        let address_with_id = with_client_id(&address, &uuid::Uuid::new_v4().simple().to_string());
        let topic = variable("orders_topic")?;
        let username = variables::get("mqtt_username").unwrap_or_default();
        let password = variables::get("mqtt_password").unwrap_or_default();
        let payload = order_messages::encode(&PlacedOrder {
            id: order.id,
            details: order.details,
            placed_at: order.placed_at,
        });
        let unavailable =
            |e: spin_sdk::mqtt::Error| Error::Unavailable(format!("MQTT publish failed: {e}"));
        Connection::open(&address_with_id, &username, &password, KEEP_ALIVE_SECS)
            .map_err(unavailable)?
            .publish(&topic, &payload, Qos::AtLeastOnce)
            .map_err(unavailable)
    }
}

fn variable(name: &str) -> Result<String, Error> {
    variables::get(name).map_err(|e| Error::Unavailable(format!("Spin variable {name}: {e}")))
}

export!(EventsMqtt);
