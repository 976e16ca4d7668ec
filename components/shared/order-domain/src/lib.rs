//! The part of the domain every business component needs: the `nano:orders` types, the `store`
//! seam (a trait, so the rules can be unit-tested natively against [`MemoryStore`]) and the rules
//! for order ids.
//!
//! The bindings are generated once here; each component's own `generate!` reuses them with
//! `with: { "nano:orders/types@0.1.0": order_domain::types, ... }`, so there is one `Order` type
//! in the whole crate graph.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/domain",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::nano::orders::store as wit_store;
pub use bindings::nano::orders::types;
pub use types::{Error, Order, OrderId, OrderRecord, OrderStatus, Timestamp};
pub use wit_store::{KeyClaim, PendingOrder};

mod glue;
mod ids;
mod memory;
mod store;

pub use ids::{new_order_id, parse_order_id};
pub use memory::{MemoryEvents, MemoryStore};
pub use store::{Events, Store, WitStore};

/// Milliseconds since the Unix epoch, from the component's WASI clock.
pub fn now_millis() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

impl OrderStatus {
    /// The one spelling of a status, on the wire (the HTTP API) and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Accepted => "accepted",
            OrderStatus::Fulfilled => "fulfilled",
        }
    }

    /// The inverse of [`OrderStatus::as_str`].
    pub fn parse(name: &str) -> Option<OrderStatus> {
        [OrderStatus::Accepted, OrderStatus::Fulfilled]
            .into_iter()
            .find(|status| status.as_str() == name)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The human message every case carries.
    pub fn message(&self) -> &str {
        match self {
            Error::Invalid(m) | Error::NotFound(m) | Error::Conflict(m) | Error::Unavailable(m) => {
                m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for status in [OrderStatus::Accepted, OrderStatus::Fulfilled] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(OrderStatus::parse("Accepted"), None);
        assert_eq!(OrderStatus::parse(""), None);
    }
}
