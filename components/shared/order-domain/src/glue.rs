//! What every component's wasm glue (`src/component.rs`, behind its `component` feature) starts
//! with, written once: the `bindings` of its world on this crate's types, and the `events`
//! export or import that the announcing components share.

/// The `bindings` module of a component's world (`world` names it in `wit/orders.wit`), on this
/// crate's `types` and, with `store`, on its `store` bindings, so there is one `Order` type in
/// the whole crate graph. The calling crate depends on `wit-bindgen` and `order-domain` and sits
/// at `components/<kind>/<name>/`.
#[macro_export]
macro_rules! bindings {
    ($world:tt) => {
        $crate::bindings!(@generate $world {});
    };
    ($world:tt, store) => {
        $crate::bindings!(@generate $world {
            "nano:orders/store@0.1.0": order_domain::wit_store,
        });
    };
    (@generate $world:tt { $($with:tt)* }) => {
        mod bindings {
            wit_bindgen::generate!({
                path: "../../../wit",
                world: $world,
                with: {
                    "nano:orders/types@0.1.0": order_domain::types,
                    $($with)*
                },
            });
        }
    };
}

/// `WitEvents`: the [`crate::Events`] seam on the `events` import of the caller's `bindings`.
#[macro_export]
macro_rules! wit_events {
    () => {
        struct WitEvents;

        impl $crate::Events for WitEvents {
            fn order_placed(&self, order: &$crate::Order) -> Result<(), $crate::Error> {
                bindings::nano::orders::events::order_placed(order)
            }
        }
    };
}

/// The `events` export of an adapter, named `adapter`: each `order-placed` is handed to
/// `announce`, a `fn(Order) -> Result<(), Error>` of the caller.
#[macro_export]
macro_rules! export_events {
    ($adapter:ident, $announce:path) => {
        struct $adapter;

        impl bindings::exports::nano::orders::events::Guest for $adapter {
            fn order_placed(order: $crate::Order) -> Result<(), $crate::Error> {
                $announce(order)
            }
        }

        bindings::export!($adapter with_types_in bindings);
    };
}
