//! Host bindings generated from `host/wit` (the vendored Spin contracts plus our worlds).

/// The Spin interfaces components import.
pub mod spin_host {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "nanohost:host/spin-host",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis.connection": crate::outbound_redis::RedisConnection,
            "fermyon:spin/mqtt.connection": crate::outbound_mqtt::MqttConnection,
        },
    });
}

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
