//! Bindings of what the triggers call (the components' exports), generated from `host/wit`.
//! Each host capability generates its own import bindings in its module.

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
