//! The wasm glue: `events.order-placed` as one MQTT publish.

use crate::with_client_id;

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
use spin_sdk::mqtt::{Connection, Qos};

/// Seconds; the connection lives for one publish, so this only has to outlast it.
const KEEP_ALIVE_SECS: u64 = 30;

struct EventsMqtt;

impl Guest for EventsMqtt {
    fn order_placed(order: Order) -> Result<(), Error> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let address = with_client_id(&required("mqtt_address")?, &unique);
        let topic = required("orders_topic")?;
        // Both empty for a broker that lets anyone in.
        let (username, password) = (optional("mqtt_username"), optional("mqtt_password"));
        let publish_failed = unavailable("MQTT publish");
        Connection::open(&address, &username, &password, KEEP_ALIVE_SECS)
            .map_err(&publish_failed)?
            .publish(&topic, &message(order), Qos::AtLeastOnce)
            .map_err(publish_failed)
    }
}

export!(EventsMqtt);
