//! Bindings of what the triggers call (the components' exports), generated from `host/wit`.
//! Each host capability generates its own import bindings in its module, most of them with
//! [`capability!`].

/// A host capability's import bindings (`mod bindings`) and its `add_to_linker`, generated
/// alike for each capability: from its own world in `host/wit`, every import async and able to
/// trap, its resources mapped to its own types (`with`), and every import linked to its
/// per-instance state (`State`), which `get` finds in the store data.
///
/// `capability!("nanohost:host/<world>", <World>, <State>, { <with> })`
macro_rules! capability {
    ($world:literal, $World:ident, $State:ty, { $($with:tt)* }) => {
        mod bindings {
            wasmtime::component::bindgen!({
                path: "wit",
                world: $world,
                imports: { default: async | trappable },
                with: { $($with)* },
            });
        }

        /// Links this capability's interfaces; `get` finds its state in the store data.
        pub fn add_to_linker<T: Send + 'static>(
            linker: &mut wasmtime::component::Linker<T>,
            get: fn(&mut T) -> &mut $State,
        ) -> anyhow::Result<()> {
            type Data = wasmtime::component::HasSelf<$State>;
            bindings::$World::add_to_linker::<T, Data>(linker, get)?;
            Ok(())
        }
    };
}
pub(crate) use capability;

/// The Redis trigger's export.
pub mod redis_trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "nanohost:host/redis-trigger",
        exports: { default: async },
    });
}

/// The MQTT trigger's export: a bare `handle-message` function.
pub mod mqtt_trigger {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "nanohost:host/mqtt-trigger",
        exports: { default: async },
    });
}
