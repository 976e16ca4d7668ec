//! Each signed message on the orders topic becomes one `fulfilment.fulfil` call. No MQTT SDK on
//! crates.io carries the trigger's world, so the export is generated from its WIT
//! (`wit/deps/spin-mqtt-trigger`, as spin-trigger-mqtt v0.7.2 publishes it).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "nano:orders/mqtt-listener",
    generate_all,
});

use nano::orders::fulfilment;
use order_messages::MessageKey;

struct MqttListener;

impl Guest for MqttListener {
    fn handle_message(message: Payload, metadata: Metadata) -> Result<(), Error> {
        // Refused messages (unsigned, badly signed, malformed) are logged and dropped, never
        // returned as errors: with QoS 1 an error must not turn into a redelivery loop of the
        // same junk. Without the key nothing is fulfilled; the order app's sweep announces the
        // order again once the key is set.
        let key = match MessageKey::from_variable(spin_sdk::variables::get("message_key")) {
            Ok(key) => key,
            Err(e) => {
                eprintln!("dropped a message on {}: {e}", metadata.topic);
                return Ok(());
            }
        };
        match order_messages::verify(&message, &key) {
            Ok(order) => match fulfilment::fulfil(&order.id) {
                // Fulfilling twice is a no-op, so a QoS 1 duplicate lands here harmlessly.
                Ok(_) => {}
                Err(e) => eprintln!(
                    "order {} from {} not fulfilled: {e:?}",
                    order.id, metadata.topic
                ),
            },
            Err(refused) => eprintln!("dropped a message on {}: {refused}", metadata.topic),
        }
        Ok(())
    }
}

export!(MqttListener);
