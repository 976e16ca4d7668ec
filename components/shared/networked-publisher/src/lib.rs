//! What the networked publishers (events-mqtt, events-redis) share. Their broker, destination and
//! credentials are Spin variables; what they send is the one wire message; and whatever goes wrong
//! is `unavailable`: the receiver keeps the order `accepted` and the sweeper announces it again,
//! so a failure is never the client's fault.
//!
//! No message made here carries a variable's value: a password must not reach a response or a log
//! line through an error.

use order_domain::{Error, Order};
use order_messages::PlacedOrder;

/// "Order placed" for `order`, as both transports carry it.
pub fn message(order: Order) -> Vec<u8> {
    order_messages::encode(&PlacedOrder {
        id: order.id,
        details: order.details,
        placed_at: order.placed_at,
    })
}

/// Maps a transport's error to `unavailable`, saying which step failed (`"Redis publish"`).
pub fn unavailable<E: std::fmt::Display>(step: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Unavailable(format!("{step} failed: {e}"))
}

/// A Spin variable the component cannot work without (a broker address, a topic).
#[cfg(target_arch = "wasm32")]
pub fn required(name: &str) -> Result<String, Error> {
    spin_sdk::variables::get(name).map_err(unavailable_variable(name))
}

/// A Spin variable that may be left out of the component's `variables` table (credentials, for a
/// broker that needs none): empty then.
#[cfg(target_arch = "wasm32")]
pub fn optional(name: &str) -> String {
    spin_sdk::variables::get(name).unwrap_or_default()
}

/// The error for a variable that cannot be read: its name and Spin's reason, never a value.
pub fn unavailable_variable<E: std::fmt::Display>(name: &str) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Unavailable(format!("Spin variable {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_wire_format() {
        let order = Order {
            id: "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11".into(),
            details: "tea".into(),
            placed_at: 7,
            idempotency_key: Some("k".into()),
        };
        let sent = order_messages::decode(&message(order.clone())).unwrap();
        assert_eq!(
            (sent.id.as_str(), sent.details.as_str(), sent.placed_at),
            (order.id.as_str(), "tea", 7)
        );
    }

    #[test]
    fn failures_are_unavailable_and_name_the_step() {
        assert_eq!(
            unavailable("Redis publish")("connection refused"),
            Error::Unavailable("Redis publish failed: connection refused".into())
        );
        assert_eq!(
            unavailable_variable("orders_topic")("undefined"),
            Error::Unavailable("Spin variable orders_topic: undefined".into())
        );
    }
}
