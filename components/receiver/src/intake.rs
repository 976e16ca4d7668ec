use order_domain::{Error, Order, OrderId, OrderRecord, OrderStatus, Store, Timestamp};

/// Larger details are refused: an order note, not a document store.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Keeps `idempotency:<key>` within Spin's 255-byte key-value key limit.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// The `events` import as a trait, so the rules can be tested without a transport.
pub trait Events {
    fn order_placed(&self, order: &Order) -> Result<(), Error>;
}

/// Accepts an order: validate, store as `accepted`, announce.
///
/// If the announcement fails the order is withdrawn again, so a client that got an error never
/// finds a half-placed order. A repeated idempotency key with the same details returns the earlier
/// order as it now stands (and announces nothing); with other details it is a conflict.
pub fn place(
    store: &impl Store,
    events: &impl Events,
    now: Timestamp,
    new_id: impl FnOnce() -> OrderId,
    details: String,
    idempotency_key: Option<String>,
) -> Result<OrderRecord, Error> {
    validate_details(&details)?;
    if let Some(key) = &idempotency_key {
        validate_idempotency_key(key)?;
        if let Some(earlier) = store.find_by_key(key)? {
            if earlier.order.details == details {
                return Ok(earlier);
            }
            return Err(Error::Conflict(format!(
                "Idempotency-Key {key:?} was already used for order {} with other details",
                earlier.order.id
            )));
        }
    }

    let record = OrderRecord {
        order: Order {
            id: new_id(),
            details,
            placed_at: now,
            idempotency_key,
        },
        status: OrderStatus::Accepted,
        updated_at: now,
    };
    store.save(&record)?;

    if let Err(announce) = events.order_placed(&record.order) {
        let reason = describe(&announce);
        return Err(match store.discard(&record.order.id) {
            Ok(()) => Error::Unavailable(format!("order could not be handed to fulfilment: {reason}")),
            // Nothing else can be done from here; say so rather than hide it.
            Err(cleanup) => Error::Unavailable(format!(
                "order could not be handed to fulfilment ({reason}) and withdrawing order {} failed: {}",
                record.order.id,
                describe(&cleanup)
            )),
        });
    }
    Ok(record)
}

fn validate_details(details: &str) -> Result<(), Error> {
    if details.trim().is_empty() {
        return Err(Error::Invalid("`details` must not be empty".into()));
    }
    if details.len() > MAX_DETAILS_BYTES {
        return Err(Error::Invalid(format!(
            "`details` is {} bytes; at most {MAX_DETAILS_BYTES} are accepted",
            details.len()
        )));
    }
    Ok(())
}

fn validate_idempotency_key(key: &str) -> Result<(), Error> {
    let printable = key.bytes().all(|b| b.is_ascii_graphic());
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || !printable {
        return Err(Error::Invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

fn describe(error: &Error) -> &str {
    match error {
        Error::Invalid(m) | Error::NotFound(m) | Error::Conflict(m) | Error::Unavailable(m) => m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::MemoryStore;
    use std::cell::{Cell, RefCell};

    #[derive(Default)]
    struct Recorder {
        placed: RefCell<Vec<Order>>,
        fail: Cell<bool>,
    }

    impl Events for Recorder {
        fn order_placed(&self, order: &Order) -> Result<(), Error> {
            if self.fail.get() {
                return Err(Error::Unavailable("broker down".into()));
            }
            self.placed.borrow_mut().push(order.clone());
            Ok(())
        }
    }

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn place_with(
        store: &MemoryStore,
        events: &Recorder,
        details: &str,
        key: Option<&str>,
    ) -> Result<OrderRecord, Error> {
        place(
            store,
            events,
            1_000,
            order_domain::new_order_id,
            details.into(),
            key.map(String::from),
        )
    }

    #[test]
    fn accepted_order_is_stored_then_announced() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        let record = place(&store, &events, 7, || ID.into(), "2 pizzas".into(), None).unwrap();
        assert_eq!(record.status, OrderStatus::Accepted);
        assert_eq!((record.order.placed_at, record.updated_at), (7, 7));
        assert_eq!(store.load(ID).unwrap(), Some(record.clone()));
        assert_eq!(*events.placed.borrow(), vec![record.order]);
    }

    #[test]
    fn every_order_gets_its_own_id() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        let a = place_with(&store, &events, "a", None).unwrap();
        let b = place_with(&store, &events, "a", None).unwrap();
        assert_ne!(a.order.id, b.order.id);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn empty_or_blank_details_are_invalid_and_nothing_is_stored() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        for details in ["", "   ", "\n\t"] {
            let err = place_with(&store, &events, details, None).unwrap_err();
            assert!(matches!(err, Error::Invalid(m) if m.contains("details")));
        }
        assert!(store.is_empty());
        assert!(events.placed.borrow().is_empty());
    }

    #[test]
    fn oversized_details_are_invalid() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        let at_limit = "x".repeat(MAX_DETAILS_BYTES);
        assert!(place_with(&store, &events, &at_limit, None).is_ok());
        let over = "x".repeat(MAX_DETAILS_BYTES + 1);
        assert!(matches!(
            place_with(&store, &events, &over, None),
            Err(Error::Invalid(_))
        ));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn malformed_idempotency_keys_are_invalid() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES + 1);
        for key in ["", "has space", "tab\t", "é", long.as_str()] {
            let err = place_with(&store, &events, "a", Some(key)).unwrap_err();
            assert!(
                matches!(err, Error::Invalid(m) if m.contains("Idempotency-Key")),
                "{key:?}"
            );
        }
        assert!(store.is_empty());
    }

    #[test]
    fn same_idempotency_key_and_details_give_the_same_order_once() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        let first = place_with(&store, &events, "a", Some("k-1")).unwrap();
        let again = place_with(&store, &events, "a", Some("k-1")).unwrap();
        assert_eq!(first, again);
        assert_eq!(store.len(), 1);
        assert_eq!(
            events.placed.borrow().len(),
            1,
            "a replay is not announced again"
        );
    }

    #[test]
    fn a_replay_reports_the_order_as_it_now_stands() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        let mut first = place_with(&store, &events, "a", Some("k-1")).unwrap();
        first.status = OrderStatus::Fulfilled;
        store.save(&first).unwrap();
        let again = place_with(&store, &events, "a", Some("k-1")).unwrap();
        assert_eq!(again.status, OrderStatus::Fulfilled);
    }

    #[test]
    fn reusing_an_idempotency_key_with_other_details_is_a_conflict() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        place_with(&store, &events, "a", Some("k-1")).unwrap();
        let err = place_with(&store, &events, "b", Some("k-1")).unwrap_err();
        assert!(matches!(err, Error::Conflict(_)));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_failed_announcement_withdraws_the_order() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        events.fail.set(true);
        let err = place_with(&store, &events, "a", Some("k-1")).unwrap_err();
        assert!(matches!(err, Error::Unavailable(m) if m.contains("broker down")));
        assert!(store.is_empty());
        assert_eq!(store.key_count(), 0, "the idempotency key is free again");
        events.fail.set(false);
        assert!(place_with(&store, &events, "a", Some("k-1")).is_ok());
    }

    #[test]
    fn a_store_outage_is_unavailable_and_announces_nothing() {
        let (store, events) = (MemoryStore::default(), Recorder::default());
        store.down.set(true);
        let err = place_with(&store, &events, "a", None).unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)));
        assert!(events.placed.borrow().is_empty());
    }
}
