//! WASIp3 HTTP handlers (`wasi:http/handler@0.3.0`) served as Spin 4 serves them: one instance
//! takes many requests, in series and at once, within Spin's reuse limits; WASIp2 handlers keep
//! a fresh instance per request (`trigger::http`).
//!
//! The worker pool is wasmtime-wasi-http's `handler::ProxyHandler` (what Spin 4.1 uses too);
//! this module says when an instance takes another request and when it goes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Result;
use wasmtime::component::GuestTaskId;
use wasmtime::{Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, Proxy, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::WasiHttpView;

use crate::app::App;
use crate::outbound_http::ServiceChaining;
use crate::state::{ComponentCtx, HostState};

/// The export a WASIp3 HTTP component has, in the WASI 0.3 version wasmtime 48 (and Spin
/// 4.1.0-pre0) implement.
pub const HTTP_HANDLER: &str = "wasi:http/handler@0.3.0";
/// Any WASI 0.3 handler, release candidates included (Spin 3.6.3 and 4.0.2 take those).
const HTTP_HANDLER_ANY_0_3: &str = "wasi:http/handler@0.3";

/// How long a WASIp3 instance lives, as `spin up`'s flags of the same names (Spin 4.x): the
/// defaults are Spin's. Spin also takes a range (`1..8`) and draws a value per instance; nanohost
/// takes single values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is dropped (`--max-instance-reuse-count`).
    pub max_instance_reuse_count: usize,
    /// Requests one instance serves at once (`--max-instance-concurrent-reuse-count`).
    pub max_instance_concurrent_reuse_count: usize,
    /// How long an idle instance is kept for another request (`--idle-instance-timeout`).
    pub idle_instance_timeout: Duration,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        InstanceReuse {
            max_instance_reuse_count: 128,
            max_instance_concurrent_reuse_count: 16,
            idle_instance_timeout: Duration::from_secs(1),
        }
    }
}

/// A duration as Spin's `--idle-instance-timeout` takes it: seconds, or a number with `s`,
/// `ms`, `us` (`μs`) or `ns`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("expected a number with `s`, `ms`, `us` or `ns`; got {s:?}");
    type Unit = fn(u64) -> Duration;
    let units: [(&str, Unit); 5] = [
        ("ms", Duration::from_millis),
        ("us", Duration::from_micros),
        ("μs", Duration::from_micros),
        ("ns", Duration::from_nanos),
        ("s", Duration::from_secs),
    ];
    for (suffix, unit) in units {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse().map(unit).map_err(|_| bad());
        }
    }
    s.parse().map(Duration::from_secs).map_err(|_| bad())
}

/// What kind of HTTP handler a component binary exports, from its top-level export names
/// (read before compiling: the engine needs to know whether to support component-model-async).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    /// `wasi:http/handler@0.3.0`.
    Wasip3,
    /// Anything else: WASIp2, or not an HTTP component (the trigger then says what it lacks).
    Other,
}

/// The kind of handler `bytes` (a component) exports. A WASI 0.3 release candidate is an error
/// naming it: nanohost's wasmtime serves only 0.3.0.
pub fn handler_kind(bytes: &[u8]) -> Result<HandlerKind> {
    let exports = top_level_exports(bytes)?;
    if exports.iter().any(|e| e == HTTP_HANDLER) {
        return Ok(HandlerKind::Wasip3);
    }
    if let Some(other) = exports.iter().find(|e| e.starts_with(HTTP_HANDLER_ANY_0_3)) {
        anyhow::bail!(
            "it exports {other}, a WASI 0.3 pre-release: nanohost (wasmtime 48) serves only \
             {HTTP_HANDLER} (Spin 3.6.3 takes 0.3.0-rc-2026-01-06, Spin 4.0.2 0.3.0-rc-2026-03-15)"
        );
    }
    Ok(HandlerKind::Other)
}

/// The names a component exports itself (not those of the components nested in it).
fn top_level_exports(bytes: &[u8]) -> Result<Vec<String>> {
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    names.push(export?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// One WASIp3 component's instances: how to make one, how long each lives.
pub struct Wasip3Handler {
    pub app: Arc<App>,
    pub ctx: Arc<ComponentCtx>,
    pub pre: ServicePre<HostState>,
    pub chaining: ServiceChaining,
    pub reuse: InstanceReuse,
}

impl HandlerState for Wasip3Handler {
    type StoreData = HostState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiration, Worker>> {
        let mut store = self.app.store(&self.ctx, &self.chaining);
        // The store outlives any one request: each request's time limit is kept below.
        crate::engine::apply_yield_only(&mut store);
        let timeout = self.app.limits.timeout;
        let instantiated =
            tokio::time::timeout(timeout, self.pre.instantiate_async(&mut store)).await;
        let service = match instantiated {
            Ok(r) => r?,
            Err(_) => wasmtime::bail!("time limit of {} ms exceeded", timeout.as_millis()),
        };
        tracing::debug!(component = %self.ctx.id, "new WASIp3 instance");
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: |state: &mut HostState| state.http(),
            expiration: Expiration {
                idle: self.reuse.idle_instance_timeout,
                request: timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX / 4)),
            },
            state: Worker {
                component: self.ctx.id.clone(),
                request_timeout: timeout,
                reuse: self.reuse,
            },
        })
    }
}

/// When a worker's instance goes: idle past the idle timeout, or a request (or the work the
/// guest does after its response) past the time limit.
pub struct Expiration {
    idle: Duration,
    request: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => self.idle,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request,
        };
        let Some(deadline) = start.checked_add(limit) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// How many requests an instance takes, in all and at once.
pub struct Worker {
    component: String,
    request_timeout: Duration,
    reuse: InstanceReuse,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_instance_reuse_count {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_instance_concurrent_reuse_count {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _: StoreContextMut<'_, HostState>,
        _: (),
        _: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        Box::pin(tokio::time::sleep(self.request_timeout))
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(e) = result {
            tracing::warn!(
                component = %self.component,
                "a WASIp3 instance ended with an error: {e:#}"
            );
        }
        drop(store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(component, kind)`: only a top-level `wasi:http/handler@0.3.0` export makes a WASIp3
    /// handler; one in a nested component does not.
    #[test]
    fn a_wasip3_handler_is_known_by_its_export() {
        let cases = [
            (
                r#"(component (instance $i) (export "wasi:http/handler@0.3.0" (instance $i)))"#,
                Some(HandlerKind::Wasip3),
            ),
            (
                r#"(component (instance $i) (export "wasi:http/incoming-handler@0.2.0" (instance $i)))"#,
                Some(HandlerKind::Other),
            ),
            (
                r#"(component (component (instance $i) (export "wasi:http/handler@0.3.0" (instance $i))))"#,
                Some(HandlerKind::Other),
            ),
            (
                r#"(component (instance $i) (export "wasi:http/handler@0.3.0-rc-2026-03-15" (instance $i)))"#,
                None,
            ),
        ];
        for (wat, kind) in cases {
            let bytes = wat::parse_str(wat).unwrap();
            assert_eq!(handler_kind(&bytes).ok(), kind, "{wat}");
        }
    }

    #[test]
    fn durations_read_as_spin_reads_them() {
        let cases = [
            ("1", Some(Duration::from_secs(1))),
            ("2s", Some(Duration::from_secs(2))),
            ("250ms", Some(Duration::from_millis(250))),
            ("7us", Some(Duration::from_micros(7))),
            ("9ns", Some(Duration::from_nanos(9))),
            ("1.5s", None),
            ("ms", None),
            ("1m", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text}");
        }
    }

    #[test]
    fn the_reuse_defaults_are_spin_4_s() {
        let reuse = InstanceReuse::default();
        assert_eq!(
            (
                reuse.max_instance_reuse_count,
                reuse.max_instance_concurrent_reuse_count,
                reuse.idle_instance_timeout
            ),
            (128, 16, Duration::from_secs(1))
        );
    }
}
