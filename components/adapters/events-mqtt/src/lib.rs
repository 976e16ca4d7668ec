//! "Order placed" published to an MQTT topic at QoS 1. Broker, topic and credentials are Spin
//! variables, so the same component runs against a loopback broker and a Kubernetes Service.
//!
//! Spin hands the address to rumqttc's `MqttOptions::parse_url`, which refuses an address without
//! a `client_id` query parameter (`invalid-address`), and makes a new client per `open`; two
//! clients with one id knock each other off the broker. So the variable stays a plain
//! `mqtt://host:1883` and every connection gets its own id here.

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

/// The prefix of our client ids, so that a broker's log shows who connected.
const CLIENT_ID_PREFIX: &str = "nano-orders-";

/// `address` with a `client_id` unique to this connection: `nano-orders-<unique>`, or, when the
/// address already names an id, that id with `-<unique>` after it (the operator's name stays
/// visible in the broker's log, and two connections still never share an id).
pub fn with_client_id(address: &str, unique: &str) -> String {
    let Some((base, query)) = address.split_once('?') else {
        return format!("{address}?client_id={CLIENT_ID_PREFIX}{unique}");
    };
    let mut named = false;
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.strip_prefix("client_id=") {
            Some(id) => {
                named = true;
                format!("client_id={id}-{unique}")
            }
            None => p.to_string(),
        })
        .collect();
    if !named {
        params.push(format!("client_id={CLIENT_ID_PREFIX}{unique}"));
    }
    format!("{base}?{}", params.join("&"))
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
    fn an_explicit_client_id_is_kept_and_made_unique() {
        assert_eq!(
            with_client_id("mqtt://broker:1883?x=1&client_id=mine", "abc"),
            "mqtt://broker:1883?x=1&client_id=mine-abc"
        );
        assert_ne!(
            with_client_id("mqtt://b?client_id=mine", "1"),
            with_client_id("mqtt://b?client_id=mine", "2")
        );
    }
}
