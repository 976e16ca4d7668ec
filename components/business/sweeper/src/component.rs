//! The wasm glue: WIT calls onto the rules in this crate.

mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "nano:orders/sweeper",
        with: {
            "nano:orders/types@0.1.0": order_domain::types,
            "nano:orders/store@0.1.0": order_domain::wit_store,
        },
    });
}

use bindings::exports::nano::orders::outbox::{Guest, SweepReport};
use bindings::nano::orders::events;
use order_domain::{Error, Events, Order, Timestamp, WitStore};

struct WitEvents;

impl Events for WitEvents {
    fn order_placed(&self, order: &Order) -> Result<(), Error> {
        events::order_placed(order)
    }
}

struct Sweeper;

impl Guest for Sweeper {
    fn sweep(now: Timestamp, grace_ms: u64) -> Result<SweepReport, Error> {
        let r = crate::sweep(&WitStore, &WitEvents, now, grace_ms)?;
        Ok(SweepReport {
            pending: r.pending,
            waiting: r.waiting,
            announced: r.announced,
            cleaned: r.cleaned,
            failed: r.failed,
            released_claims: r.released_claims,
        })
    }
}

bindings::export!(Sweeper with_types_in bindings);
