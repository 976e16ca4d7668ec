//! Fulfilment processor: moves an order from `accepted` to `fulfilled`.

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

use order_domain::{parse_order_id, Error, OrderRecord, OrderStatus, Store, Timestamp};

/// Marks the order fulfilled. A fulfilled order is returned untouched, so a redelivered message
/// (MQTT QoS 1, a retried call) is harmless.
pub fn fulfil(store: &impl Store, now: Timestamp, id: &str) -> Result<OrderRecord, Error> {
    let id = parse_order_id(id)?;
    let mut record = store
        .load(&id)?
        .ok_or_else(|| Error::NotFound(format!("no order with id {id} to fulfil")))?;
    if record.status == OrderStatus::Fulfilled {
        return Ok(record);
    }
    record.status = OrderStatus::Fulfilled;
    // Clocks of separate hosts may disagree; a status change never goes back in time.
    record.updated_at = now.max(record.updated_at);
    store.save(&record)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{MemoryStore, Order};

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn accepted(store: &MemoryStore, at: Timestamp) -> OrderRecord {
        let record = OrderRecord {
            order: Order {
                id: ID.into(),
                details: "tea".into(),
                placed_at: at,
                idempotency_key: Some("k".into()),
            },
            status: OrderStatus::Accepted,
            updated_at: at,
        };
        store.save(&record).unwrap();
        record
    }

    #[test]
    fn an_accepted_order_becomes_fulfilled() {
        let store = MemoryStore::default();
        let before = accepted(&store, 10);
        let after = fulfil(&store, 25, ID).unwrap();
        assert_eq!(after.status, OrderStatus::Fulfilled);
        assert_eq!(after.updated_at, 25);
        assert_eq!(after.order, before.order, "the order itself never changes");
        assert_eq!(store.load(ID).unwrap(), Some(after));
    }

    #[test]
    fn fulfilling_twice_is_a_no_op() {
        let store = MemoryStore::default();
        accepted(&store, 10);
        let first = fulfil(&store, 25, ID).unwrap();
        let second = fulfil(&store, 99, ID).unwrap();
        assert_eq!(
            first, second,
            "the second call changes nothing, not even the time"
        );
    }

    #[test]
    fn the_status_time_never_goes_backwards() {
        let store = MemoryStore::default();
        accepted(&store, 50);
        assert_eq!(fulfil(&store, 40, ID).unwrap().updated_at, 50);
    }

    #[test]
    fn unknown_and_malformed_ids_are_refused() {
        let store = MemoryStore::default();
        let unknown = fulfil(&store, 1, "6f1d2c3b-4a59-4e68-b7a6-958473625140");
        assert!(matches!(unknown, Err(Error::NotFound(_))));
        assert!(matches!(fulfil(&store, 1, "nope"), Err(Error::Invalid(_))));
        assert!(store.is_empty());
    }

    #[test]
    fn a_store_outage_is_unavailable() {
        let store = MemoryStore::default();
        accepted(&store, 1);
        store.down.set(true);
        assert!(matches!(fulfil(&store, 2, ID), Err(Error::Unavailable(_))));
    }
}
