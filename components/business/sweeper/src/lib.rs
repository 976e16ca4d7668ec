//! Sweeper: the outbox's other half. Every order the store keeps `accepted` for longer than a grace
//! period is announced again; entries whose order is fulfilled (or was never stored) are taken out.
//!
//! With the receiver's "stored, then announced" and fulfilment's idempotent `fulfil`, this turns
//! every shape into at-least-once delivery: an order answered 202 is in the outbox until it is
//! fulfilled, and the sweep keeps announcing it until then.
//!
//! A sweep must converge whatever the outbox holds: it stops on a time budget well inside a host's
//! request limit (what it finished is kept), an entry whose announcement fails is put off (and to
//! the back of the outbox) for longer each time, so entries that keep failing never hold the head,
//! and when announcing fails several times in a row the sweep only probes now and then instead of
//! spending its budget on a transport that is down. One sweep runs at a time (a lease per time
//! slot in the store, so a dead sweeper blocks nobody for long).

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod component;

use std::collections::HashSet;

use order_domain::{Error, Events, KeyClaim, OrderStatus, PendingOrder, Store, Timestamp};

/// Outbox entries read per store call.
pub const PAGE: u32 = 200;

/// Outbox entries looked at per sweep at most: a backlog larger than this is worked off over
/// several sweeps (deferred entries go to the back, so each sweep reaches new ones).
pub const MAX_ENTRIES: u32 = 5_000;

/// Idempotency-key claims looked at per sweep (claims of indexed orders are forgotten as they are
/// seen, so only the ones in flight or orphaned stay).
pub const CLAIM_BATCH: u32 = 2_000;

/// Fulfilled orders removed per store call, and calls per sweep at most.
pub const PURGE_BATCH: u32 = 200;
pub const PURGE_CALLS: u32 = 5;

/// How long a sweep may work: a third of nanohost's 30 s request limit, so a slow store call or
/// announcement at the end still fits (Spin has no limit; the lease below assumes this one).
pub const BUDGET_MS: u64 = 10_000;

/// Announcements failing in a row, before any went through in this sweep, after which the
/// transport is taken as down for this sweep. Once one went through, failures are the entries'
/// own (e.g. a message the transport refuses): they are backed off one by one, and a transport
/// that goes down in the middle of a sweep is left to the budget and the backoff.
pub const FAILURES_IN_A_ROW: u32 = 5;
/// While the transport looks down, one due entry in this many is tried (a probe: if it goes
/// through, announcing resumes, the skipped entries first); the others are skipped, left as they
/// are for the next sweep.
pub const PROBE_EVERY: u32 = 10;

/// The wait before an entry whose announcement failed is tried again: doubling from the first
/// value with each failure in a row, up to the second.
pub const BACKOFF_FIRST_MS: u64 = 5_000;
pub const BACKOFF_CAP_MS: u64 = 5 * 60_000;

/// Sweeps take a lease on every time slot of this length that their run may overlap (from their
/// start to start + [`LEASE_MS`]); a sweeper that dies holding them blocks sweeps only until the
/// slots are past.
pub const LEASE_SLOT_MS: u64 = 10_000;
pub const LEASE_MS: u64 = BUDGET_MS + 10_000;

/// Time since the sweep started, in milliseconds: the budget's clock, given by the caller so
/// the rules stay free of any host API (the component uses `std::time::Instant`).
pub trait Clock {
    fn elapsed_ms(&self) -> u64;
}

/// What a sweep is told (the `outbox.sweep-settings` of the WIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub grace_ms: u64,
    /// 0 keeps fulfilled orders for ever.
    pub retention_ms: u64,
}

/// What one sweep did (the `outbox.sweep-report` of the WIT).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub pending: u32,
    pub waiting: u32,
    pub announced: u32,
    pub cleaned: u32,
    pub failed: u32,
    pub released_claims: u32,
    pub deferred: u32,
    pub backed_off: u32,
    pub skipped: u32,
    pub purged: u32,
    pub out_of_time: bool,
}

/// The wait before the try after `attempts` failures in a row.
pub fn backoff_ms(attempts: u32) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    BACKOFF_FIRST_MS
        .saturating_mul(1 << doublings)
        .min(BACKOFF_CAP_MS)
}

/// One sweep at `now`: announce again what is older than the grace period and still accepted.
///
/// Errors: `conflict` when another sweep holds the lease; `unavailable` when the store fails
/// before anything could be done.
pub fn sweep(
    store: &impl Store,
    events: &impl Events,
    clock: &impl Clock,
    now: Timestamp,
    settings: Settings,
) -> Result<Report, Error> {
    let leases = take_leases(store, now)?;
    let announcer = Announcer {
        store,
        events,
        now,
        failures_in_a_row: 0,
    };
    let report = run(announcer, clock, settings);
    for lease in &leases {
        // A lease left behind only blocks sweeps until its slot is past.
        if let Err(e) = store.free_lease(lease) {
            eprintln!("sweep: lease {lease}: {}", e.message());
        }
    }
    report
}

fn take_leases(store: &impl Store, now: Timestamp) -> Result<Vec<String>, Error> {
    let mut taken = Vec::new();
    for slot in now / LEASE_SLOT_MS..=now.saturating_add(LEASE_MS) / LEASE_SLOT_MS {
        let name = format!("sweep:{slot}");
        let won = store.take_lease(&name);
        if let Ok(true) = won {
            taken.push(name);
            continue;
        }
        for lease in &taken {
            let _ = store.free_lease(lease);
        }
        return Err(match won {
            Err(e) => e,
            _ => Error::Conflict("another sweep is running; try again later".into()),
        });
    }
    Ok(taken)
}

fn run(
    mut announcer: Announcer<'_, impl Store, impl Events>,
    clock: &impl Clock,
    settings: Settings,
) -> Result<Report, Error> {
    let (store, now) = (announcer.store, announcer.now);
    let mut report = Report::default();
    let out_of_time = |report: &mut Report| {
        report.out_of_time = clock.elapsed_ms() >= BUDGET_MS;
        report.out_of_time
    };
    // Idempotency keys of orders in the outbox: their claims must stay (see `sweep_claims`).
    let mut keys_in_outbox = HashSet::new();
    // A deferred entry goes to the back of the outbox, where this walk meets it again.
    let mut seen = HashSet::new();
    let mut since_probe = 0;
    // Due entries skipped while announcing looked down.
    let mut skipped = Vec::new();
    let mut after = None;
    let mut whole_outbox = false;
    'walk: loop {
        let page = match store.pending(after, PAGE) {
            Ok(page) => page,
            Err(e) if after.is_none() => return Err(e),
            Err(e) => {
                report.failed += 1;
                eprintln!("sweep: reading the outbox: {}", e.message());
                break;
            }
        };
        let last_page = page.len() < PAGE as usize;
        for entry in page {
            after = Some(entry.position);
            if let Some(key) = &entry.idempotency_key {
                keys_in_outbox.insert(key.clone());
            }
            if !seen.insert(entry.id.clone()) {
                continue;
            }
            if report.pending >= MAX_ENTRIES || out_of_time(&mut report) {
                break 'walk;
            }
            report.pending += 1;
            if now < entry.since.saturating_add(settings.grace_ms) {
                report.waiting += 1;
                continue;
            }
            if now < entry.not_before {
                report.deferred += 1;
                continue;
            }
            if announcer.failures_in_a_row >= FAILURES_IN_A_ROW && report.announced == 0 {
                since_probe += 1;
                if since_probe < PROBE_EVERY {
                    report.skipped += 1;
                    skipped.push(entry);
                    continue;
                }
                since_probe = 0;
            }
            let announced = report.announced;
            announcer.attempt(&entry, &mut report);
            if announced == 0 && report.announced > 0 {
                // The transport is up after all: what was skipped for it gets its turn.
                for entry in std::mem::take(&mut skipped) {
                    if out_of_time(&mut report) {
                        break 'walk;
                    }
                    report.skipped -= 1;
                    announcer.attempt(&entry, &mut report);
                }
            }
        }
        if last_page {
            whole_outbox = true;
            break;
        }
    }
    if whole_outbox && !out_of_time(&mut report) {
        sweep_claims(store, now, settings.grace_ms, &keys_in_outbox, &mut report)?;
    }
    if settings.retention_ms > 0 {
        let before = now.saturating_sub(settings.retention_ms);
        for _ in 0..PURGE_CALLS {
            if out_of_time(&mut report) {
                break;
            }
            match store.purge_fulfilled(before, PURGE_BATCH) {
                Ok(n) => {
                    report.purged += n;
                    if n < PURGE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    eprintln!("sweep: retention: {}", e.message());
                    break;
                }
            }
        }
    }
    Ok(report)
}

/// What announcing needs through one sweep, and how its announcements have gone lately.
struct Announcer<'a, S, E> {
    store: &'a S,
    events: &'a E,
    now: Timestamp,
    /// Announcements failed since the last one that went through.
    failures_in_a_row: u32,
}

impl<S: Store, E: Events> Announcer<'_, S, E> {
    /// Announces (or cleans) one due entry; an entry whose announcement fails is backed off.
    fn attempt(&mut self, entry: &PendingOrder, report: &mut Report) {
        match step(self.store, self.events, entry) {
            Ok(Step::Announced) => {
                report.announced += 1;
                self.failures_in_a_row = 0;
            }
            Ok(Step::Cleaned) => report.cleaned += 1,
            Err(Failure::Store(e)) => {
                report.failed += 1;
                eprintln!("sweep: order {}: {}", entry.id, e.message());
            }
            Err(Failure::Announce(e)) => {
                report.failed += 1;
                self.failures_in_a_row += 1;
                self.back_off(entry, &e, report);
            }
        }
    }

    /// Puts an entry whose announcement failed off for longer each time (and to the back).
    fn back_off(&self, entry: &PendingOrder, e: &Error, report: &mut Report) {
        let attempts = entry.attempts.saturating_add(1);
        let next = self.now.saturating_add(backoff_ms(attempts));
        eprintln!(
            "sweep: order {} not announced (attempt {attempts}, next after {next}): {}",
            entry.id,
            e.message()
        );
        match self.store.defer_pending(entry, attempts, next) {
            Ok(()) => report.backed_off += 1,
            Err(e) => eprintln!("sweep: order {}: {}", entry.id, e.message()),
        }
    }
}

/// Frees the idempotency keys of claimants that died between claiming and storing their order,
/// and forgets claims whose order is indexed (a caller that wins such a key again finds the order
/// by its key before it creates anything).
///
/// A claim without an indexed order is noted the first time a sweep sees it and freed by a sweep
/// at least `grace_ms` later, unless an order carrying the key is in the outbox (a half-stored
/// order, kept claimed on purpose until fulfilment re-indexes it). Outbox entries carry their
/// order's key, and only a sweep that saw the whole outbox frees anything.
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
            // Revoked, not just released: should the claimant be slow rather than dead, it sees
            // its claim was taken and withdraws its order (see the receiver's `place`).
            Some(at) if now >= at.saturating_add(grace_ms) && !keys_in_outbox.contains(&key) => {
                store
                    .revoke_claim(&key)
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

enum Failure {
    Store(Error),
    Announce(Error),
}

fn step(store: &impl Store, events: &impl Events, entry: &PendingOrder) -> Result<Step, Failure> {
    match store.load(&entry.id).map_err(Failure::Store)? {
        Some(record) if record.status == OrderStatus::Accepted => {
            events
                .order_placed(&record.order)
                .map_err(Failure::Announce)?;
            Ok(Step::Announced)
        }
        // Fulfilled (its own save should have cleared the entry; it died before it could), or no
        // record at all (a writer died between the entry and the record, or a failed save was
        // withdrawn): nothing to announce.
        _ => {
            store.clear_pending(entry).map_err(Failure::Store)?;
            Ok(Step::Cleaned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_domain::{MemoryEvents, MemoryStore, Order, OrderRecord};
    use std::cell::Cell;

    const GRACE: u64 = 10_000;

    /// A clock that does not move: every sweep fits its budget.
    struct Still;
    impl Clock for Still {
        fn elapsed_ms(&self) -> u64 {
            0
        }
    }

    fn sweep(
        store: &MemoryStore,
        events: &impl Events,
        now: Timestamp,
        grace_ms: u64,
    ) -> Result<Report, Error> {
        let settings = Settings {
            grace_ms,
            retention_ms: 0,
        };
        super::sweep(store, events, &Still, now, settings)
    }

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
        store.put_orphan_pending(&fulfilled, 1_000);
        // An entry whose record was never written.
        store.put_orphan_pending("6f1d2c3b-4a59-4e68-b7a6-958473625140", 2_000);
        // The same, but young: it may be being written right now.
        store.put_orphan_pending("6f1d2c3b-4a59-4e68-b7a6-958473625141", 90_000);

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
        assert_eq!(
            (report.failed, report.backed_off, report.announced),
            (1, 1, 0)
        );
        assert_eq!(store.outbox_len(), 1);
        events.fail.set(false);
        let early = sweep(&store, &events, 20_000 + BACKOFF_FIRST_MS - 1, GRACE).unwrap();
        assert_eq!((early.deferred, early.announced), (1, 0), "backed off");
        let due = sweep(&store, &events, 20_000 + BACKOFF_FIRST_MS, GRACE).unwrap();
        assert_eq!(due.announced, 1);
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
    fn a_sweep_works_through_more_than_one_page_oldest_first() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        for n in 0..=255u8 {
            order(&store, n, 1_000 + u64::from(n), OrderStatus::Accepted);
        }
        for n in 0..=255u8 {
            let id = format!("1b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b{n:02x}");
            store.put_orphan_pending(&id, 5_000 + u64::from(n));
        }
        let report = sweep(&store, &events, 99_000, GRACE).unwrap();
        assert_eq!(report.pending, 512);
        assert_eq!((report.announced, report.cleaned), (256, 256));
        assert_eq!(events.ids()[0], order_id(0), "the oldest come first");
    }

    fn order_id(n: u8) -> String {
        format!("0b0c7a34-7d5e-4f6a-9a43-5d1f0e2c9b{n:02x}")
    }

    /// Orders numbered from `first`, placed at 1_000 (with their own ids: `n` up to 65_535).
    fn many_orders(store: &MemoryStore, range: std::ops::Range<u32>) -> Vec<String> {
        range
            .map(|n| {
                let id = format!("2b0c7a34-7d5e-4f6a-9a43-5d1f{n:08x}");
                let record = OrderRecord {
                    order: Order {
                        id: id.clone(),
                        details: "tea".into(),
                        placed_at: 1_000,
                        idempotency_key: None,
                    },
                    status: OrderStatus::Accepted,
                    updated_at: 1_000,
                };
                store.save(&record).unwrap();
                id
            })
            .collect()
    }

    #[test]
    fn entries_that_keep_failing_do_not_stop_the_others() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        // More refused orders than a page and than the sweep reads before it gives up on a
        // transport that looks down, all ahead of the good ones.
        let refused = many_orders(&store, 0..600);
        events.refused.borrow_mut().extend(refused.iter().cloned());
        let good = many_orders(&store, 600..620);

        let good: HashSet<String> = good.into_iter().collect();
        let mut now = 20_000;
        let mut sweeps = 0;
        let mut report;
        while {
            sweeps += 1;
            report = sweep(&store, &events, now, GRACE).unwrap();
            println!("sweep {sweeps}: {report:?}");
            events.ids().into_iter().collect::<HashSet<_>>() != good
        } {
            assert!(sweeps < 6, "after {sweeps} sweeps: {report:?}");
            now += 60_000;
        }
        println!("{sweeps} sweeps announced all {} good orders", good.len());
        assert_eq!(store.outbox_len(), 620, "nothing is dropped");
        let entries = store.pending(None, 1_000).unwrap();
        let backed_off = entries.iter().filter(|e| e.attempts > 0).count();
        assert!(backed_off > 0 && report.backed_off > 0, "{report:?}");
        assert!(
            entries
                .iter()
                .all(|e| e.attempts == 0 || refused.contains(&e.id)),
            "only refused orders are backed off"
        );
    }

    #[test]
    fn backoff_grows_with_each_failure_and_is_capped() {
        assert_eq!(backoff_ms(1), BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(2), 2 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(3), 4 * BACKOFF_FIRST_MS);
        assert_eq!(backoff_ms(40), BACKOFF_CAP_MS);
        assert_eq!(backoff_ms(u32::MAX), BACKOFF_CAP_MS);
    }

    #[test]
    fn a_transport_that_is_down_is_probed_not_tried_for_every_entry() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        many_orders(&store, 0..100);
        events.fail.set(true);
        let report = sweep(&store, &events, 20_000, GRACE).unwrap();
        let tried = FAILURES_IN_A_ROW + (100 - FAILURES_IN_A_ROW) / PROBE_EVERY;
        assert_eq!(report.failed, tried, "{report:?}");
        assert_eq!(report.backed_off, tried);
        assert_eq!(report.skipped, 100 - tried);
        assert_eq!(store.outbox_len(), 100);

        // Back up: the skipped ones are due at once, the backed-off ones later.
        events.fail.set(false);
        let report = sweep(&store, &events, 21_000, GRACE).unwrap();
        assert_eq!((report.announced, report.deferred), (100 - tried, tried));
        let report = sweep(&store, &events, 20_000 + BACKOFF_FIRST_MS, GRACE).unwrap();
        assert_eq!(report.announced, 100);
    }

    /// A clock that moves on by `step` ms each time an order is announced.
    struct Slow<'a> {
        inner: &'a MemoryEvents,
        store: &'a MemoryStore,
        elapsed: Cell<u64>,
        step: u64,
    }
    impl Clock for Slow<'_> {
        fn elapsed_ms(&self) -> u64 {
            self.elapsed.get()
        }
    }
    impl Events for Slow<'_> {
        // Announced in-process: fulfilled at once, as the sweeper's composition does.
        fn order_placed(&self, order: &Order) -> Result<(), Error> {
            self.elapsed.set(self.elapsed.get() + self.step);
            self.inner.order_placed(order)?;
            let mut record = self.store.load(&order.id)?.unwrap();
            record.status = OrderStatus::Fulfilled;
            self.store.save(&record)
        }
    }

    #[test]
    fn a_sweep_stops_on_its_budget_and_keeps_what_it_finished() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        many_orders(&store, 0..250);
        let settings = Settings {
            grace_ms: GRACE,
            retention_ms: 0,
        };
        let mut sweeps = Vec::new();
        while store.outbox_len() > 0 {
            let slow = Slow {
                inner: &events,
                store: &store,
                elapsed: Cell::new(0),
                step: 100,
            };
            let now = 20_000 + 60_000 * sweeps.len() as u64;
            let report = super::sweep(&store, &slow, &slow, now, settings).unwrap();
            assert!(slow.elapsed_ms() <= BUDGET_MS, "{report:?}");
            sweeps.push(report);
            assert!(sweeps.len() <= 3, "{sweeps:?}");
        }
        let per_sweep = (BUDGET_MS / 100) as u32;
        assert_eq!(sweeps[0].announced, per_sweep);
        assert!(sweeps[0].out_of_time);
        assert_eq!(sweeps[1].announced, per_sweep);
        assert_eq!(sweeps[2].announced, 250 - 2 * per_sweep);
        assert!(!sweeps[2].out_of_time);
        assert_eq!(events.ids().len(), 250, "each announced once");
    }

    #[test]
    fn one_sweep_at_a_time() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let now = 1_000_000;
        // Another sweep, started a little earlier, holds the slot it still runs in.
        let held = format!("sweep:{}", (now + LEASE_MS) / LEASE_SLOT_MS);
        assert!(store.take_lease(&held).unwrap());
        let busy = sweep(&store, &events, now, GRACE);
        assert!(matches!(busy, Err(Error::Conflict(_))), "{busy:?}");
        assert!(
            !store.is_leased(&format!("sweep:{}", now / LEASE_SLOT_MS)),
            "what the refused sweep took is given back"
        );
        // Once that slot is past (its sweeper died), sweeps run again and free their leases.
        let later = now + LEASE_MS + LEASE_SLOT_MS;
        sweep(&store, &events, later, GRACE).unwrap();
        for slot in later / LEASE_SLOT_MS..=(later + LEASE_MS) / LEASE_SLOT_MS {
            assert!(!store.is_leased(&format!("sweep:{slot}")));
        }
        sweep(&store, &events, later, GRACE).expect("a finished sweep holds nothing");
    }

    #[test]
    fn fulfilled_orders_are_removed_after_the_retention_period() {
        let (store, events) = (MemoryStore::default(), MemoryEvents::default());
        let record = claimed_order(&store, "kept-a-week", OrderStatus::Fulfilled);
        let fulfilled_at = record.updated_at;
        store.save(&record).unwrap();
        let accepted = order(&store, 2, 1_000, OrderStatus::Accepted);
        let settings = |retention_ms| Settings {
            grace_ms: GRACE,
            retention_ms,
        };
        let week = 7 * 24 * 3_600_000;
        let early = super::sweep(&store, &events, &Still, fulfilled_at + week, settings(week));
        assert_eq!(early.unwrap().purged, 0);
        let due = super::sweep(
            &store,
            &events,
            &Still,
            fulfilled_at + week + 1,
            settings(week),
        );
        assert_eq!(due.unwrap().purged, 1);
        assert_eq!(store.load(&record.order.id).unwrap(), None);
        assert_eq!(store.find_by_key("kept-a-week").unwrap(), None);
        assert!(!store.is_claimed("kept-a-week"));
        assert!(
            store.load(&accepted).unwrap().is_some(),
            "accepted orders stay whatever their age"
        );
        let old = order(&store, 3, 1_000, OrderStatus::Fulfilled);
        let never = super::sweep(&store, &events, &Still, u64::MAX / 2, settings(0));
        assert_eq!(never.unwrap().purged, 0, "0 keeps them for ever");
        assert!(store.load(&old).unwrap().is_some());
    }
}
