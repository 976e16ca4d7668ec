//! Per-component configuration (built once) and per-instance store data (built per request).

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::allowed_hosts::{AllowedHosts, OutboundGate};
use crate::outbound_http::OutboundHttp;

/// Connection pools shared by every instance of every component.
#[derive(Default)]
pub struct Shared {
    pub redis: Arc<crate::outbound_redis::Pool>,
}

/// What one `[component.<id>]` may do, resolved at start-up.
pub struct ComponentCtx {
    pub id: String,
    pub allowed_hosts: Arc<AllowedHosts>,
    /// The key-value stores this component lists.
    pub key_value: Arc<crate::key_value::ComponentStores>,
    pub variables: Arc<HashMap<String, crate::secret::Value>>,
    pub environment: Vec<(String, String)>,
    pub max_memory_bytes: usize,
    pub shared: Arc<Shared>,
}

/// Makes the store of each instance of an app: its engine, its memory limit, its time limit.
#[derive(Clone)]
pub struct Stores {
    engine: wasmtime::Engine,
    /// The time limit of a request or message.
    pub timeout: std::time::Duration,
}

impl Stores {
    pub fn new(engine: wasmtime::Engine, timeout: std::time::Duration) -> Stores {
        Stores { engine, timeout }
    }

    /// A fresh store for one request or message.
    pub fn store(
        &self,
        ctx: &Arc<ComponentCtx>,
        chaining: &crate::outbound_http::ServiceChaining,
    ) -> wasmtime::Store<HostState> {
        let mut store = wasmtime::Store::new(
            &self.engine,
            HostState::with_chaining(ctx.clone(), chaining.clone()),
        );
        store.limiter(|s| &mut s.limits);
        crate::engine::apply_deadline(&mut store, self.timeout);
        store
    }
}

/// The `T` of every `Store<T>`.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) hooks: OutboundHttp,
    pub(crate) key_value: crate::key_value::KeyValueInstance,
    pub(crate) variables: crate::variables::VariablesInstance,
    pub(crate) redis: crate::outbound_redis::OutboundRedisInstance,
    pub(crate) mqtt: crate::outbound_mqtt::OutboundMqttInstance,
}

impl HostState {
    /// An instance's state without service chaining (outbound `*.spin.internal` requests are
    /// then `destination-not-found`).
    pub fn new(component: Arc<ComponentCtx>) -> HostState {
        HostState::with_chaining(component, crate::outbound_http::ServiceChaining::none())
    }

    /// An instance's state whose outbound `http://<id>.spin.internal` requests go to `chaining`.
    pub fn with_chaining(
        component: Arc<ComponentCtx>,
        chaining: crate::outbound_http::ServiceChaining,
    ) -> HostState {
        let mut wasi = WasiCtx::builder();
        wasi.inherit_stdout().inherit_stderr();
        for (k, v) in &component.environment {
            wasi.env(k, v);
        }
        let gate = OutboundGate::new(
            component.id.as_str().into(),
            component.allowed_hosts.clone(),
        );
        HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(component.max_memory_bytes)
                .build(),
            hooks: OutboundHttp::new(
                component.id.as_str().into(),
                component.allowed_hosts.clone(),
                chaining,
            ),
            key_value: crate::key_value::KeyValueInstance::new(component.key_value.clone()),
            variables: crate::variables::VariablesInstance::new(
                component.id.as_str().into(),
                component.variables.clone(),
            ),
            redis: crate::outbound_redis::OutboundRedisInstance::new(
                gate.clone(),
                component.shared.redis.clone(),
            ),
            mqtt: crate::outbound_mqtt::OutboundMqttInstance::new(gate),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
