//! Status provider: where does an order stand?

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

use order_domain::{parse_order_id, Error, OrderRecord, Store};

/// Looks an order up by id; a malformed id is `invalid`, an unknown one `not-found`.
pub fn get(store: &impl Store, id: &str) -> Result<OrderRecord, Error> {
    let id = parse_order_id(id)?;
    store
        .load(&id)?
        .ok_or_else(|| Error::NotFound(format!("no order with id {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{MemoryStore, Order, OrderStatus};

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn stored(store: &MemoryStore) -> OrderRecord {
        let record = OrderRecord {
            order: Order {
                id: ID.into(),
                details: "tea".into(),
                placed_at: 1,
                idempotency_key: None,
            },
            status: OrderStatus::Accepted,
            updated_at: 1,
        };
        store.save(&record).unwrap();
        record
    }

    #[test]
    fn a_stored_order_is_found_by_any_case_of_its_id() {
        let store = MemoryStore::default();
        let record = stored(&store);
        assert_eq!(get(&store, ID).unwrap(), record);
        assert_eq!(get(&store, &ID.to_uppercase()).unwrap(), record);
    }

    #[test]
    fn an_unknown_id_is_not_found() {
        let store = MemoryStore::default();
        let err = get(&store, "6f1d2c3b-4a59-4e68-b7a6-958473625140").unwrap_err();
        assert!(matches!(err, Error::NotFound(_)));
    }

    #[test]
    fn a_malformed_id_is_invalid_without_touching_the_store() {
        let store = MemoryStore::default();
        store.down.set(true);
        assert!(matches!(get(&store, "839284"), Err(Error::Invalid(_))));
    }

    #[test]
    fn a_store_outage_is_unavailable() {
        let store = MemoryStore::default();
        store.down.set(true);
        assert!(matches!(get(&store, ID), Err(Error::Unavailable(_))));
    }
}
