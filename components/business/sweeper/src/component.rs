//! The wasm glue: WIT calls onto the rules in this crate.

order_domain::bindings!("nano:orders/sweeper", store);
order_domain::wit_events!();

use bindings::exports::nano::orders::outbox::{Guest, SweepReport, SweepSettings};
use order_domain::{Error, Timestamp, WitStore};

/// The budget's clock: wasi:clocks' monotonic clock under `Instant`.
struct Started(std::time::Instant);

impl crate::Clock for Started {
    fn elapsed_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

struct Sweeper;

impl Guest for Sweeper {
    fn sweep(now: Timestamp, settings: SweepSettings) -> Result<SweepReport, Error> {
        let started = Started(std::time::Instant::now());
        let settings = crate::Settings {
            grace_ms: settings.grace_ms,
            retention_ms: settings.retention_ms,
        };
        let r = crate::sweep(&WitStore, &WitEvents, &started, now, settings)?;
        Ok(SweepReport {
            pending: r.pending,
            waiting: r.waiting,
            announced: r.announced,
            cleaned: r.cleaned,
            failed: r.failed,
            released_claims: r.released_claims,
            deferred: r.deferred,
            backed_off: r.backed_off,
            skipped: r.skipped,
            purged: r.purged,
            out_of_time: r.out_of_time,
        })
    }
}

bindings::export!(Sweeper with_types_in bindings);
