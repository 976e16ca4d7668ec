//! Sweeper: the outbox's other half. Every order the store keeps `accepted` for longer than a grace
//! period is announced again; entries whose order is fulfilled (or was never stored) are taken out.
//!
//! With the receiver's "stored, then announced" and fulfilment's idempotent `fulfil`, this turns
//! every shape into at-least-once delivery: an order answered 202 is in the outbox until it is
//! fulfilled, and the sweep keeps announcing it until then.

#[cfg(target_arch = "wasm32")]
mod component;

use std::collections::HashSet;

use order_domain::{Error, Events, KeyClaim, OrderStatus, PendingOrder, Store, Timestamp};

/// Outbox entries looked at per sweep. Sweeps run every minute or so; a backlog larger than this
/// is worked off over several sweeps, oldest first.
pub const BATCH: u32 = 500;

/// Idempotency-key claims looked at per sweep (claims of indexed orders are forgotten as they are
/// seen, so only the ones in flight or orphaned stay).
pub const CLAIM_BATCH: u32 = 500;

/// What one sweep did (the `outbox.sweep-report` of the WIT).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub pending: u32,
    pub waiting: u32,
    pub announced: u32,
    pub cleaned: u32,
    pub failed: u32,
    pub released_claims: u32,
}

/// One sweep at `now`: announce again what is older than `grace_ms` and still accepted.
///
/// An entry younger than the grace period is left alone even if its record is missing: the store
/// writes the outbox entry just before the record, so a young entry without a record may be one
/// that is being written right now.
pub fn sweep(
    store: &impl Store,
    events: &impl Events,
    now: Timestamp,
    grace_ms: u64,
) -> Result<Report, Error> {
    let mut report = Report::default();
    let pending = store.pending(BATCH)?;
    let whole_outbox = pending.len() < BATCH as usize;
    // Idempotency keys of orders in the outbox: their claims must stay (see `sweep_claims`).
    let mut keys_in_outbox = HashSet::new();
    for entry in pending {
        report.pending += 1;
        if now < entry.since.saturating_add(grace_ms) {
            report.waiting += 1;
            continue;
        }
        match step(store, events, &entry, &mut keys_in_outbox) {
            Ok(Step::Announced) => report.announced += 1,
            Ok(Step::Cleaned) => report.cleaned += 1,
            Err(e) => {
                report.failed += 1;
                eprintln!("sweep: order {}: {}", entry.id, e.message());
            }
        }
    }
    if whole_outbox {
        sweep_claims(store, now, grace_ms, &keys_in_outbox, &mut report)?;
    }
    Ok(report)
}

/// Frees the idempotency keys of claimants that died between claiming and storing their order,
/// and forgets claims whose order is indexed (a caller that wins such a key again finds the order
/// by its key before it creates anything).
///
/// A claim without an indexed order is noted the first time a sweep sees it and freed by a sweep
/// at least `grace_ms` later, unless an order carrying the key is in the outbox (a half-stored
/// order, kept claimed on purpose until fulfilment re-indexes it). Such an order was placed before
/// its key was claimed, so by then it is past the grace period and was loaded above; and only a
/// sweep that saw the whole outbox frees anything.
fn sweep_claims(
    store: &impl Store,
    now: Timestamp,
    grace_ms: u64,
    keys_in_outbox: &HashSet<String>,
    report: &mut Report,
) -> Result<(), Error> {
    for claim in store.claims(CLAIM_BATCH)? {
        let KeyClaim {
            idempotency_key: key,
            indexed,
            noted_at,
        } = claim;
        let result = match noted_at {
            _ if indexed => store.release_key(&key),
            None => store.note_claim(&key, now),
            Some(at) if now >= at.saturating_add(grace_ms) && !keys_in_outbox.contains(&key) => {
                store
                    .release_key(&key)
                    .map(|()| report.released_claims += 1)
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = result {
            report.failed += 1;
            eprintln!("sweep: Idempotency-Key {key:?}: {}", e.message());
        }
    }
    Ok(())
}

enum Step {
    Announced,
    Cleaned,
}

fn step(
    store: &impl Store,
    events: &impl Events,
    entry: &PendingOrder,
    keys_in_outbox: &mut HashSet<String>,
) -> Result<Step, Error> {
    let record = store.load(&entry.id)?;
    if let Some(key) = record
        .as_ref()
        .and_then(|r| r.order.idempotency_key.clone())
    {
        keys_in_outbox.insert(key);
    }
    match record {
        Some(record) if record.status == OrderStatus::Accepted => {
            events.order_placed(&record.order)?;
            Ok(Step::Announced)
        }
        // Fulfilled (its own save should have cleared the entry; it died before it could), or no
        // record at all (a writer died between the entry and the record, or a failed save was
        // withdrawn): nothing to announce.
        _ => {
            store.clear_pending(entry)?;
            Ok(Step::Cleaned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{MemoryEvents, MemoryStore, Order, OrderRecord};

    const GRACE: u64 = 10_000;

    /// An order (stored without its key) whose idempotency key `key` is claimed: the record with
    /// the key, for the case to store as it needs.
    fn claimed_order(store: &MemoryStore, key: &str, status: OrderStatus) -> OrderRecord {
        assert!(store.claim_key(key).unwrap());
        let id = order(store, 1, 1_000, status);
        let mut record = store.load(&id).unwrap().unwrap();
        record.order.idempotency_key = Some(key.into());
        record
    }

    fn order(store: &MemoryStore, n: u8, placed_at: Timestamp, status: OrderStatus) -> String {
        let id = format!("0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b{n:02x}");
        let accepted = OrderRecord {
            order: Order {
                id: id.clone(),
                details: "tea".into(),
                placed_at,
                idempotency_key: None,
            },
            status: OrderStatus::Accepted,
            updated_at: placed_at,
        };
        store.save(&accepted).unwrap();
        if status == OrderStatus::Fulfilled {
            store.save(&OrderRecord { status, ..accepted }).unwrap();
        }
        id
    }

    #[test]
    fn orders_accepted_for_longer_than_the_grace_period_are_announced_again() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let old = order(&store, 1, 1_000, OrderStatus::Accepted);
        let young = order(&store, 2, 50_000, OrderStatus::Accepted);
        let report = sweep(&store, &events, 55_000, GRACE).unwrap();
        assert_eq!(
            report,
            Report {
                pending: 2,
                waiting: 1,
                announced: 1,
                ..Report::default()
            }
        );
        assert_eq!(events.ids(), vec![old.clone()]);
        assert_eq!(
            store.outbox_len(),
            2,
            "announced is not fulfilled: both stay in the outbox"
        );

        let later = sweep(&store, &events, 60_000, GRACE).unwrap();
        assert_eq!(later.announced, 2);
        assert_eq!(events.ids(), vec![old.clone(), old, young]);
    }

    #[test]
    fn the_grace_period_is_inclusive_of_its_end() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        order(&store, 1, 1_000, OrderStatus::Accepted);
        assert_eq!(sweep(&store, &events, 10_999, GRACE).unwrap().waiting, 1);
        assert_eq!(sweep(&store, &events, 11_000, GRACE).unwrap().announced, 1);
    }

    #[test]
    fn fulfilled_orders_leave_the_outbox_on_their_own() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        order(&store, 1, 1_000, OrderStatus::Fulfilled);
        assert_eq!(store.outbox_len(), 0);
        let report = sweep(&store, &events, 99_000, GRACE).unwrap();
        assert_eq!(report, Report::default());
    }

    #[test]
    fn entries_of_fulfilled_or_missing_orders_are_cleaned_once_old_enough() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        // A fulfilled record whose entry outlived it (its writer died between the two writes).
        let fulfilled = order(&store, 1, 1_000, OrderStatus::Fulfilled);
        store.put_orphan_pending(&PendingOrder {
            id: fulfilled,
            since: 1_000,
        });
        // An entry whose record was never written.
        let ghost = PendingOrder {
            id: "6f1d2c3b-4a59-4e68-b7a6-958473625140".into(),
            since: 2_000,
        };
        store.put_orphan_pending(&ghost);
        // The same, but young: it may be being written right now.
        store.put_orphan_pending(&PendingOrder {
            id: "6f1d2c3b-4a59-4e68-b7a6-958473625141".into(),
            since: 90_000,
        });

        let report = sweep(&store, &events, 95_000, GRACE).unwrap();
        assert_eq!(
            report,
            Report {
                pending: 3,
                waiting: 1,
                cleaned: 2,
                ..Report::default()
            }
        );
        assert!(events.placed.borrow().is_empty());
        assert_eq!(store.outbox_len(), 1);
    }

    #[test]
    fn a_failed_announcement_is_counted_and_kept_for_the_next_sweep() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let id = order(&store, 1, 1_000, OrderStatus::Accepted);
        events.fail.set(true);
        let report = sweep(&store, &events, 20_000, GRACE).unwrap();
        assert_eq!((report.failed, report.announced), (1, 0));
        assert_eq!(store.outbox_len(), 1);
        events.fail.set(false);
        assert_eq!(sweep(&store, &events, 21_000, GRACE).unwrap().announced, 1);
        assert_eq!(events.ids(), vec![id]);
    }

    #[test]
    fn a_claim_whose_claimant_died_is_freed_after_the_grace_period() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        assert!(store.claim_key("dead").unwrap());
        let first = sweep(&store, &events, 1_000, GRACE).unwrap();
        assert_eq!(first.released_claims, 0, "first seen: only noted");
        assert!(store.is_claimed("dead"));
        let early = sweep(&store, &events, 10_999, GRACE).unwrap();
        assert_eq!(early.released_claims, 0);
        let later = sweep(&store, &events, 11_000, GRACE).unwrap();
        assert_eq!(later.released_claims, 1);
        assert!(!store.is_claimed("dead"));
        assert!(
            store.claim_key("dead").unwrap(),
            "the key can be used again"
        );
    }

    #[test]
    fn claims_of_indexed_orders_are_forgotten_without_counting() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        store
            .save(&claimed_order(&store, "done", OrderStatus::Fulfilled))
            .unwrap();
        let report = sweep(&store, &events, 2_000, GRACE).unwrap();
        assert_eq!(report, Report::default());
        assert!(!store.is_claimed("done"));
        assert!(store.find_by_key("done").unwrap().is_some());
    }

    #[test]
    fn a_claim_whose_order_is_half_stored_stays_until_fulfilment_indexes_it() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let record = claimed_order(&store, "half", OrderStatus::Accepted);
        store.put_half_stored(&record);
        assert!(store.find_by_key("half").unwrap().is_none());

        for now in [2_000, 20_000, 40_000] {
            let report = sweep(&store, &events, now, GRACE).unwrap();
            assert_eq!(report.released_claims, 0, "at {now}");
        }
        assert!(
            store.is_claimed("half"),
            "no second order can be made for it"
        );
        assert_eq!(
            events.placed.borrow().len(),
            2,
            "announced by the two late sweeps"
        );
    }

    #[test]
    fn an_unreadable_outbox_is_unavailable() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        store.down.set(true);
        assert!(matches!(
            sweep(&store, &events, 1, GRACE),
            Err(Error::Unavailable(_))
        ));
    }

    #[test]
    fn a_sweep_looks_at_one_batch_oldest_first() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        for n in 0..=255u8 {
            order(&store, n, 1_000 + u64::from(n), OrderStatus::Accepted);
        }
        for n in 0..=255u8 {
            let id = format!("1b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b{n:02x}");
            store.put_orphan_pending(&PendingOrder {
                id,
                since: 5_000 + u64::from(n),
            });
        }
        let report = sweep(&store, &events, 99_000, GRACE).unwrap();
        assert_eq!(report.pending, BATCH);
        assert_eq!(report.announced, 256, "the oldest come first");
        assert_eq!(report.cleaned, BATCH - 256);
    }
}
