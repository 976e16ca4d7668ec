use order_domain::{Error, Events, Order, OrderId, OrderRecord, OrderStatus, Store, Timestamp};

/// Larger details are refused: an order note, not a document store.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Keeps `idempotency:<key>` within Spin's 255-byte key-value key limit.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 200;

/// How long a caller that lost the claim on an idempotency key waits for the winner's order to
/// appear before it answers `unavailable` ("retry"): the pauses between looks, in milliseconds.
/// The winner stores its order a few milliseconds after its claim, so the first looks nearly always
/// find it; ~2 s in all covers a slow store without holding a request for long.
pub const CLAIM_WAIT_MS: &[u32] = &[2, 5, 10, 20, 40, 80, 150, 250, 400, 500, 500];

/// Accepts an order: validate, store as `accepted`, announce.
///
/// Once the record is stored the order is accepted, whatever the announcement does: a failed
/// announcement is left to the sweeper, which announces every order still `accepted` after a grace
/// period (the store keeps them in its outbox). Only a failed `save` is an error, and then what was
/// written of the order is removed again, so a client that got an error finds no half-placed order.
///
/// With an idempotency key, the caller that claims the key creates the order; any other caller
/// waits for that order to appear (`sleep(ms)` between looks) and returns it if the details are the
/// same, `conflict` if not. Losers re-claim on every look, so a key released by a failed winner is
/// taken over at once. A winner whose claim the sweeper revoked while it stored its order (a stalled
/// store connection looks like a dead claimant) takes its order back and answers the key's order
/// if it finds one, `unavailable` ("retry") if not: never a second order for the key.
pub fn place(
    store: &impl Store,
    events: &impl Events,
    now: Timestamp,
    new_id: impl FnOnce() -> OrderId,
    sleep: impl Fn(u32),
    details: String,
    idempotency_key: Option<String>,
) -> Result<OrderRecord, Error> {
    validate_details(&details)?;
    // The claim's fence, read before claiming: if it moved by the time the order is stored, the
    // sweeper took the claim from this caller (it looked dead) and another may have made the order.
    let mut epoch = None;
    if let Some(key) = &idempotency_key {
        validate_idempotency_key(key)?;
        if let Some(earlier) = store.find_by_key(key)? {
            return replay(earlier, &details, key);
        }
        let mut waits = CLAIM_WAIT_MS.iter();
        while !{
            epoch = Some(store.claim_epoch(key)?);
            store.claim_key(key)?
        } {
            let Some(&ms) = waits.next() else {
                return Err(Error::Unavailable(format!(
                    "an order with Idempotency-Key {key:?} is still being placed; retry"
                )));
            };
            sleep(ms);
            if let Some(earlier) = store.find_by_key(key)? {
                return replay(earlier, &details, key);
            }
        }
        // A sweep forgets claims whose order is indexed, so a claim can be won for a key that
        // already has its order (indexed after our first look): look once more before creating.
        if let Some(earlier) = store.find_by_key(key)? {
            return replay(earlier, &details, key);
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
    if let Err(failed) = store.save(&record) {
        return Err(withdraw(store, &record, failed));
    }
    if let (Some(key), Some(epoch)) = (&record.order.idempotency_key, epoch) {
        let fenced = store.claim_epoch(key).map(|now| now != epoch);
        if !matches!(fenced, Ok(false)) {
            return fenced_out(store, &record, key);
        }
    }

    if let Err(announce) = events.order_placed(&record.order) {
        // Accepted all the same: the record is in the outbox, and the sweeper announces it again.
        eprintln!(
            "order {} is accepted but not announced yet ({}); the next sweep announces it",
            record.order.id,
            announce.message()
        );
    }
    Ok(record)
}

/// [`place`] with this instance's clock, fresh UUIDs, and a sleep that waits without spinning
/// (wasi:clocks under the hood): what the component and a statically linked program both run.
pub fn place_now(
    store: &impl Store,
    events: &impl Events,
    details: String,
    idempotency_key: Option<String>,
) -> Result<OrderRecord, Error> {
    place(
        store,
        events,
        order_domain::now_millis(),
        order_domain::new_order_id,
        |ms| std::thread::sleep(std::time::Duration::from_millis(ms.into())),
        details,
        idempotency_key,
    )
}

/// This caller's claim was revoked while it stored its order (or the fence could not be read):
/// another caller may have placed the key's order since, so this one is taken back (not its key:
/// that is someone else's now) and the key's order, if there is one now, is answered instead.
fn fenced_out(store: &impl Store, record: &OrderRecord, key: &str) -> Result<OrderRecord, Error> {
    if let Err(e) = store.discard(record) {
        // Still in the outbox, so it is announced and fulfilled; the client was not answered 202
        // and a retry with the key finds whichever order holds the key by then.
        return Err(Error::Unavailable(format!(
            "the order's Idempotency-Key {key:?} was taken over while it was stored, and \
             removing order {} failed: {}",
            record.order.id,
            e.message()
        )));
    }
    match store.find_by_key(key)? {
        Some(other) => replay(other, &record.order.details, key),
        None => Err(Error::Unavailable(format!(
            "an order with Idempotency-Key {key:?} is still being placed; retry"
        ))),
    }
}

fn replay(earlier: OrderRecord, details: &str, key: &str) -> Result<OrderRecord, Error> {
    if earlier.order.details == details {
        return Ok(earlier);
    }
    // Not the other order's id: knowing an order's id is what lets a client read it.
    Err(Error::Conflict(format!(
        "Idempotency-Key {key:?} was already used for an order with other details"
    )))
}

/// Undoes a failed `save`, and frees the idempotency key only if that worked: a key whose order
/// may still be half stored stays claimed, so no second order can be made for it (a retry then
/// answers `unavailable` until the sweeper has announced and fulfilment re-indexed the first one).
fn withdraw(store: &impl Store, record: &OrderRecord, failed: Error) -> Error {
    let reason = failed.message();
    let cleanup = store
        .discard(record)
        .and_then(|()| match &record.order.idempotency_key {
            Some(key) => store.release_key(key),
            None => Ok(()),
        });
    match cleanup {
        Ok(()) => Error::Unavailable(format!("the order could not be stored: {reason}")),
        // Nothing else can be done from here; say so rather than hide it.
        Err(cleanup) => Error::Unavailable(format!(
            "the order could not be stored ({reason}), and removing what was written of order {} failed: {}",
            record.order.id,
            cleanup.message()
        )),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{KeyClaim, MemoryEvents, MemoryStore, PendingOrder};
    use std::cell::Cell;
    use std::sync::Mutex;

    const ID: &str = "0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b11";

    fn no_sleep(_: u32) {}

    fn place_with(
        store: &impl Store,
        events: &MemoryEvents,
        details: &str,
        key: Option<&str>,
    ) -> Result<OrderRecord, Error> {
        place(
            store,
            events,
            1_000,
            order_domain::new_order_id,
            no_sleep,
            details.into(),
            key.map(String::from),
        )
    }

    /// `place` at `now`, making the order `id`, with no wait for another claimant.
    fn place_as(
        store: &MemoryStore,
        events: &MemoryEvents,
        now: Timestamp,
        id: &'static str,
        details: &str,
        key: Option<&str>,
    ) -> Result<OrderRecord, Error> {
        let (details, key) = (details.into(), key.map(String::from));
        place(store, events, now, || id.into(), no_sleep, details, key)
    }

    /// `place` for a caller of key `k` who must make no order of its own: another caller holds, or
    /// held, the claim.
    fn place_as_second(
        store: &MemoryStore,
        events: &MemoryEvents,
        details: &str,
        sleep: impl Fn(u32),
    ) -> Result<OrderRecord, Error> {
        let no_order = || panic!("a second caller makes no order");
        let key = Some("k".into());
        place(store, events, 9, no_order, sleep, details.into(), key)
    }

    /// The record another caller, holding the claim on `key`, stores.
    fn someone_elses(details: &str, key: &str) -> OrderRecord {
        OrderRecord {
            order: Order {
                id: ID.into(),
                details: details.into(),
                placed_at: 5,
                idempotency_key: Some(key.into()),
            },
            status: OrderStatus::Accepted,
            updated_at: 5,
        }
    }

    #[test]
    fn accepted_order_is_stored_then_announced() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let record = place_as(&store, &events, 7, ID, "2 pizzas", None).unwrap();
        assert_eq!(record.status, OrderStatus::Accepted);
        assert_eq!((record.order.placed_at, record.updated_at), (7, 7));
        assert_eq!(store.load(ID).unwrap(), Some(record.clone()));
        assert_eq!(*events.placed.borrow(), vec![record.order]);
        assert_eq!(
            store.pending(None, 10).unwrap(),
            vec![PendingOrder {
                id: ID.into(),
                since: 7,
                idempotency_key: None,
                attempts: 0,
                not_before: 0,
                position: 1,
            }],
            "an accepted order is in the outbox until it is fulfilled"
        );
    }

    #[test]
    fn every_order_gets_its_own_id() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let a = place_with(&store, &events, "a", None).unwrap();
        let b = place_with(&store, &events, "a", None).unwrap();
        assert_ne!(a.order.id, b.order.id);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn empty_or_blank_details_are_invalid_and_nothing_is_stored() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        for details in ["", "   ", "\n\t"] {
            let err = place_with(&store, &events, details, Some("k")).unwrap_err();
            assert!(matches!(err, Error::Invalid(m) if m.contains("details")));
        }
        assert!(store.is_empty());
        assert!(
            !store.is_claimed("k"),
            "nothing is claimed for a bad request"
        );
        assert!(events.placed.borrow().is_empty());
    }

    #[test]
    fn oversized_details_are_invalid() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
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
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
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
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
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
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let mut first = place_with(&store, &events, "a", Some("k-1")).unwrap();
        first.status = OrderStatus::Fulfilled;
        store.save(&first).unwrap();
        let again = place_with(&store, &events, "a", Some("k-1")).unwrap();
        assert_eq!(again.status, OrderStatus::Fulfilled);
    }

    #[test]
    fn reusing_an_idempotency_key_with_other_details_is_a_conflict_that_names_no_order() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let first = place_with(&store, &events, "a", Some("k-1")).unwrap();
        let err = place_with(&store, &events, "b", Some("k-1")).unwrap_err();
        let Error::Conflict(message) = err else {
            panic!("{err:?}")
        };
        assert!(message.contains("k-1"), "{message}");
        assert!(!message.contains(&first.order.id), "{message}");
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_caller_that_loses_the_claim_waits_for_the_winners_order() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        assert!(store.claim_key("k").unwrap(), "the other caller's claim");
        let looks = Cell::new(0);
        let winner_saves_on_third_look = |_ms: u32| {
            looks.set(looks.get() + 1);
            if looks.get() == 3 {
                store.save(&someone_elses("a", "k")).unwrap();
            }
        };
        let same = place_as_second(&store, &events, "a", winner_saves_on_third_look).unwrap();
        assert_eq!(same, someone_elses("a", "k"));
        assert_eq!(looks.get(), 3);
        assert!(events.placed.borrow().is_empty(), "the winner announces");

        let other = place_as_second(&store, &events, "b", no_sleep).unwrap_err();
        assert!(
            matches!(&other, Error::Conflict(m) if !m.contains(ID)),
            "{other:?}"
        );
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_winner_that_never_stores_makes_the_others_retry_after_about_two_seconds() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        assert!(store.claim_key("k").unwrap());
        let slept = Cell::new(0u32);
        let err =
            place_as_second(&store, &events, "a", |ms| slept.set(slept.get() + ms)).unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("retry")),
            "{err:?}"
        );
        assert!((1_500..=2_500).contains(&slept.get()), "{}", slept.get());
        assert!(store.is_empty());
    }

    #[test]
    fn a_key_released_by_a_failed_winner_is_taken_over() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        assert!(store.claim_key("k").unwrap());
        let record = place(
            &store,
            &events,
            9,
            || ID.into(),
            |_| store.release_key("k").unwrap(),
            "a".into(),
            Some("k".into()),
        )
        .unwrap();
        assert_eq!(record.order.id, ID);
        assert_eq!(store.find_by_key("k").unwrap(), Some(record));
    }

    #[test]
    fn a_claimant_whose_claim_was_revoked_while_it_stored_makes_no_second_order() {
        const OTHER: &str = "6f1d2c3b-4a59-4e68-b7a6-958473625140";
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        // The first caller's store connection stalls in its save, after its claim. Meanwhile a
        // sweep takes it for dead and revokes its claim, and a second caller with the same key
        // places the order.
        let second = std::sync::Arc::new(Mutex::new(None));
        let seen = second.clone();
        *store.during_next_save.borrow_mut() = Some(Box::new(move |store: &MemoryStore| {
            store.revoke_claim("k").unwrap();
            let events = MemoryEvents::default();
            let made = place_as(store, &events, 2, OTHER, "a", Some("k"));
            *seen.lock().unwrap() = Some(made.unwrap());
        }));
        let first = place_as(&store, &events, 1, ID, "a", Some("k"));
        let second = second.lock().unwrap().clone();
        let second = second.expect("the second caller placed it");
        assert_eq!(second.order.id, OTHER);
        assert!(
            matches!(&first, Err(Error::Unavailable(m)) if m.contains("retry")),
            "{first:?}"
        );
        assert_eq!(store.len(), 1, "one order for the key");
        assert_eq!(store.load(OTHER).unwrap(), Some(second.clone()));
        assert_eq!(store.load(ID).unwrap(), None);
        assert!(
            events.placed.borrow().is_empty(),
            "the first announced nothing"
        );
        assert_eq!(store.pending(None, 10).unwrap().len(), 1);
        // Its save overwrote the key's index; the second order's fulfilment writes it again.
        let fulfilled = OrderRecord {
            status: OrderStatus::Fulfilled,
            ..second.clone()
        };
        store.save(&fulfilled).unwrap();
        assert_eq!(store.find_by_key("k").unwrap(), Some(fulfilled));
    }

    #[test]
    fn a_claimant_that_keeps_its_claim_is_not_fenced() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        store.revoke_claim("k").unwrap();
        // A sweep forgets claims of indexed orders without revoking them.
        *store.during_next_save.borrow_mut() = Some(Box::new(|store: &MemoryStore| {
            store.release_key("other").unwrap()
        }));
        let record = place_with(&store, &events, "a", Some("k")).unwrap();
        assert_eq!(store.find_by_key("k").unwrap(), Some(record));
    }

    #[test]
    fn a_claim_won_after_the_order_was_indexed_replays_it() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        // The first caller's order is indexed and a sweep has forgotten its claim; a second
        // caller looked before the index was written, and now wins the claim.
        store.save(&someone_elses("a", "k")).unwrap();
        store.key_misses.set(1);
        let again = place_as_second(&store, &events, "a", no_sleep).unwrap();
        assert_eq!(again, someone_elses("a", "k"));
        assert_eq!(store.len(), 1);
        assert_eq!(store.key_misses.get(), 0, "the first look missed the index");
    }

    #[test]
    fn a_failed_announcement_still_accepts_the_order_and_leaves_it_in_the_outbox() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        events.fail.set(true);
        let record = place_with(&store, &events, "a", Some("k-1")).unwrap();
        assert_eq!(record.status, OrderStatus::Accepted);
        assert_eq!(store.load(&record.order.id).unwrap(), Some(record.clone()));
        assert_eq!(store.pending(None, 10).unwrap().len(), 1);
        events.fail.set(false);
        let again = place_with(&store, &events, "a", Some("k-1")).unwrap();
        assert_eq!(again, record, "a retry is a replay, not a second order");
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_failed_save_is_unavailable_leaves_nothing_and_frees_the_key() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        store.saves_left.set(Some(0));
        let err = place_with(&store, &events, "a", Some("k-1")).unwrap_err();
        assert!(matches!(err, Error::Unavailable(m) if m.contains("could not be stored")));
        assert!(store.is_empty());
        assert_eq!(store.outbox_len(), 0);
        assert_eq!(store.key_count(), 0);
        assert!(!store.is_claimed("k-1"), "the key is free again");
        assert!(events.placed.borrow().is_empty());
        store.saves_left.set(None);
        assert!(place_with(&store, &events, "a", Some("k-1")).is_ok());
    }

    #[test]
    fn a_key_whose_order_may_be_half_stored_stays_claimed() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        store.discards_fail.set(true);
        store.saves_left.set(Some(0));
        let err = place_with(&store, &events, "a", Some("k-1")).unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable(m) if m.contains("still down")),
            "{err:?}"
        );
        assert!(store.is_claimed("k-1"));
    }

    #[test]
    fn a_store_outage_is_unavailable_and_announces_nothing() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        store.down.set(true);
        let err = place_with(&store, &events, "a", None).unwrap_err();
        assert!(matches!(err, Error::Unavailable(_)));
        assert!(events.placed.borrow().is_empty());
    }

    /// A store shared by threads, each call atomic, as a key-value backend's single operations are.
    struct Shared(Mutex<MemoryStore>);

    impl Store for Shared {
        fn load(&self, id: &str) -> Result<Option<OrderRecord>, Error> {
            self.0.lock().unwrap().load(id)
        }
        fn find_by_key(&self, key: &str) -> Result<Option<OrderRecord>, Error> {
            self.0.lock().unwrap().find_by_key(key)
        }
        fn claim_key(&self, key: &str) -> Result<bool, Error> {
            self.0.lock().unwrap().claim_key(key)
        }
        fn release_key(&self, key: &str) -> Result<(), Error> {
            self.0.lock().unwrap().release_key(key)
        }
        fn claim_epoch(&self, key: &str) -> Result<u64, Error> {
            self.0.lock().unwrap().claim_epoch(key)
        }
        fn revoke_claim(&self, key: &str) -> Result<(), Error> {
            self.0.lock().unwrap().revoke_claim(key)
        }
        fn save(&self, record: &OrderRecord) -> Result<(), Error> {
            // The order record and its key index are separate writes in the adapter: let other
            // threads in between them, where the race used to make a second order.
            let store = self.0.lock().unwrap();
            let mut unindexed = record.clone();
            unindexed.order.idempotency_key = None;
            store.save(&unindexed)?;
            drop(store);
            std::thread::yield_now();
            self.0.lock().unwrap().save(record)
        }
        fn discard(&self, record: &OrderRecord) -> Result<(), Error> {
            self.0.lock().unwrap().discard(record)
        }
        fn pending(&self, after: Option<u64>, limit: u32) -> Result<Vec<PendingOrder>, Error> {
            self.0.lock().unwrap().pending(after, limit)
        }
        fn defer_pending(
            &self,
            e: &PendingOrder,
            attempts: u32,
            at: Timestamp,
        ) -> Result<(), Error> {
            self.0.lock().unwrap().defer_pending(e, attempts, at)
        }
        fn take_lease(&self, name: &str) -> Result<bool, Error> {
            self.0.lock().unwrap().take_lease(name)
        }
        fn free_lease(&self, name: &str) -> Result<(), Error> {
            self.0.lock().unwrap().free_lease(name)
        }
        fn purge_fulfilled(&self, before: Timestamp, limit: u32) -> Result<u32, Error> {
            self.0.lock().unwrap().purge_fulfilled(before, limit)
        }
        fn clear_pending(&self, entry: &PendingOrder) -> Result<(), Error> {
            self.0.lock().unwrap().clear_pending(entry)
        }
        fn claims(&self, limit: u32) -> Result<Vec<KeyClaim>, Error> {
            self.0.lock().unwrap().claims(limit)
        }
        fn note_claim(&self, key: &str, at: Timestamp) -> Result<(), Error> {
            self.0.lock().unwrap().note_claim(key, at)
        }
    }

    struct NoEvents;

    impl Events for NoEvents {
        fn order_placed(&self, _: &Order) -> Result<(), Error> {
            Ok(())
        }
    }

    #[test]
    fn sixty_four_concurrent_callers_with_one_key_make_one_order() {
        let store = Shared(Mutex::new(MemoryStore::default()));
        let results: Vec<(bool, Result<OrderRecord, Error>)> = std::thread::scope(|scope| {
            let callers: Vec<_> = (0..64)
                .map(|n| {
                    let store = &store;
                    scope.spawn(move || {
                        let cake = n % 2 == 0;
                        let details = if cake { "cake" } else { "pie" };
                        let result = place(
                            store,
                            &NoEvents,
                            1,
                            order_domain::new_order_id,
                            |ms| std::thread::sleep(std::time::Duration::from_millis(ms.into())),
                            details.into(),
                            Some("same-key".into()),
                        );
                        (cake, result)
                    })
                })
                .collect();
            callers.into_iter().map(|c| c.join().unwrap()).collect()
        });
        let store = store.0.into_inner().unwrap();
        assert_eq!(store.len(), 1, "exactly one order");
        let order = store.find_by_key("same-key").unwrap().unwrap();
        let winner_cake = order.order.details == "cake";
        for (cake, result) in results {
            match result {
                Ok(record) => {
                    assert_eq!(cake, winner_cake, "only the winner's details replay");
                    assert_eq!(record.order.id, order.order.id);
                }
                Err(Error::Conflict(m)) => {
                    assert_ne!(cake, winner_cake);
                    assert!(!m.contains(&order.order.id), "{m}");
                }
                Err(other) => panic!("{other:?}"),
            }
        }
    }
}
