//! "Order placed" published to an MQTT topic at QoS 1. Broker, topic and credentials are Spin
//! variables, so the same component runs against a loopback broker and a Kubernetes Service.
//!
//! Spin hands the address to rumqttc's `MqttOptions::parse_url`, which refuses an address without
//! a `client_id` query parameter (`invalid-address`), and makes a new client per `open`; two
//! clients with one id knock each other off the broker. So the variable stays a plain
//! `mqtt://host:1883` and every connection gets its own id here.

#[cfg(target_arch = "wasm32")]
mod component;

/// The prefix of our client ids, so that a broker's log shows who connected.
const CLIENT_ID_PREFIX: &str = "nano-orders-";

/// `address` with `client_id=nano-orders-<unique>` appended as a query parameter, unless the
/// address already names one (an operator's choice wins).
pub fn with_client_id(address: &str, unique: &str) -> String {
    let id = format!("client_id={CLIENT_ID_PREFIX}{unique}");
    match address.split_once('?') {
        None => format!("{address}?{id}"),
        Some((_, query)) if query.split('&').any(|p| p.starts_with("client_id=")) => {
            address.to_string()
        }
        Some(_) if address.ends_with('?') || address.ends_with('&') => format!("{address}{id}"),
        Some(_) => format!("{address}&{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_client_id;

    #[test]
    fn a_plain_address_gets_a_client_id() {
        assert_eq!(
            with_client_id("mqtt://127.0.0.1:1883", "abc"),
            "mqtt://127.0.0.1:1883?client_id=nano-orders-abc"
        );
    }

    #[test]
    fn other_parameters_are_kept() {
        assert_eq!(
            with_client_id("mqtt://broker:1883?keep_alive_secs=5", "abc"),
            "mqtt://broker:1883?keep_alive_secs=5&client_id=nano-orders-abc"
        );
        assert_eq!(
            with_client_id("mqtt://broker:1883?", "abc"),
            "mqtt://broker:1883?client_id=nano-orders-abc"
        );
    }

    #[test]
    fn an_explicit_client_id_wins() {
        let address = "mqtt://broker:1883?x=1&client_id=mine";
        assert_eq!(with_client_id(address, "abc"), address);
    }
}
