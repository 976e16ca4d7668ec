//! "Order placed" as a plain call into fulfilment: no broker, no serialization, no network.
//! The call returns when fulfilment is done, so in the composed app an order is already
//! fulfilled when its 202 goes out.

use order_domain::{Error, Order, OrderRecord};

/// Announces `order` by fulfilling it with `fulfil` (the `fulfilment` import in the component, the
/// rule itself where it is linked statically).
///
/// Whatever fulfilment says, the announcement did not go through: the receiver keeps the order
/// accepted and the sweeper announces it again, so every failure is `unavailable` (retry later),
/// never the caller's fault.
pub fn announce(
    order: &Order,
    fulfil: impl FnOnce(&str) -> Result<OrderRecord, Error>,
) -> Result<(), Error> {
    fulfil(&order.id).map(drop).map_err(|e| {
        Error::Unavailable(format!(
            "fulfilment refused order {}: {}",
            order.id,
            e.message()
        ))
    })
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::OrderStatus;

    fn order() -> Order {
        Order {
            id: "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11".into(),
            details: "tea".into(),
            placed_at: 1,
            idempotency_key: None,
        }
    }

    #[test]
    fn a_fulfilled_order_is_announced() {
        let o = order();
        let fulfilled = |id: &str| {
            assert_eq!(id, o.id);
            Ok(OrderRecord {
                order: o.clone(),
                status: OrderStatus::Fulfilled,
                updated_at: 2,
            })
        };
        assert_eq!(announce(&o, fulfilled), Ok(()));
    }

    #[test]
    fn any_refusal_is_unavailable_and_names_the_order() {
        let o = order();
        for refusal in [
            Error::NotFound("gone".into()),
            Error::Invalid("bad".into()),
            Error::Unavailable("down".into()),
        ] {
            let why = refusal.message().to_string();
            let err = announce(&o, |_| Err(refusal)).unwrap_err();
            assert!(
                matches!(&err, Error::Unavailable(m) if m.contains(&o.id) && m.contains(&why)),
                "{err:?}"
            );
        }
    }
}
