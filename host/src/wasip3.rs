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

use crate::outbound_http::ServiceChaining;
use crate::state::{ComponentCtx, HostState, Stores};

/// The export a WASIp3 HTTP component has, in the WASI 0.3 version wasmtime 48 (and Spin
/// 4.1.0-pre0) implement.
pub const HTTP_HANDLER: &str = "wasi:http/handler@0.3.0";
/// Any WASI 0.3 handler, release candidates included (Spin 3.6.3 and 4.0.2 take those).
const HTTP_HANDLER_ANY_0_3: &str = "wasi:http/handler@0.3";

/// How long a WASIp3 instance lives, as `spin up`'s flags of the same names (Spin 4.x): the
/// defaults are Spin's, and each may be a range from which every new instance draws its own
/// value, as in Spin (which spreads the instances' ends over time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is dropped (`--max-instance-reuse-count`).
    pub max_instance_reuse_count: Draw<usize>,
    /// Requests one instance serves at once (`--max-instance-concurrent-reuse-count`).
    pub max_instance_concurrent_reuse_count: Draw<usize>,
    /// How long an idle instance is kept for another request (`--idle-instance-timeout`).
    pub idle_instance_timeout: Draw<Duration>,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        InstanceReuse {
            max_instance_reuse_count: Draw::Value(128),
            max_instance_concurrent_reuse_count: Draw::Value(16),
            idle_instance_timeout: Draw::Value(Duration::from_secs(1)),
        }
    }
}

/// A value, or a range `a..b` (b excluded) to draw one from, uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draw<T> {
    Value(T),
    Range(T, T),
}

impl Draw<usize> {
    /// Spin's syntax: `8` or `1..8`. An empty range is refused here (Spin accepts it and
    /// panics on the first instance); so is 0, which would serve nothing.
    pub fn parse_count(s: &str) -> std::result::Result<Draw<usize>, String> {
        let count = |t: &str| match t.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "expected a count of 1 or more, or a range `a..b`; got {s:?}"
            )),
        };
        Draw::parse(s, count)
    }

    fn draw(self) -> usize {
        match self {
            Draw::Value(v) => v,
            Draw::Range(a, b) => a + (random() % (b - a) as u64) as usize,
        }
    }
}

impl Draw<Duration> {
    /// Spin's syntax: `1s`, `500ms` or `100ms..2s` (see [`parse_duration`]).
    pub fn parse_duration(s: &str) -> std::result::Result<Draw<Duration>, String> {
        Draw::parse(s, parse_duration)
    }

    fn draw(self) -> Duration {
        match self {
            Draw::Value(v) => v,
            Draw::Range(a, b) => {
                let span = (b - a).as_nanos().min(u128::from(u64::MAX)) as u64;
                a + Duration::from_nanos(random() % span)
            }
        }
    }
}

impl<T: PartialOrd + Copy> Draw<T> {
    fn parse(
        s: &str,
        one: impl Fn(&str) -> std::result::Result<T, String>,
    ) -> std::result::Result<Draw<T>, String> {
        match s.split_once("..") {
            None => one(s).map(Draw::Value),
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                if a < b {
                    Ok(Draw::Range(a, b))
                } else {
                    Err(format!("the range {s:?} is empty"))
                }
            }
        }
    }
}

/// A random number, good enough to spread instances' lifetimes: every `RandomState` has new
/// SipHash keys, so the hash of nothing differs each time.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
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
    pub stores: Stores,
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
        let mut store = self.stores.store(&self.ctx, &self.chaining);
        // The store outlives any one request: each request's time limit is kept below.
        crate::engine::apply_yield_only(&mut store);
        let timeout = self.stores.timeout;
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
                idle: self.reuse.idle_instance_timeout.draw(),
                request: timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX / 4)),
            },
            state: Worker {
                component: self.ctx.id.clone(),
                request_timeout: timeout,
                max_total: self.reuse.max_instance_reuse_count.draw(),
                max_concurrent: self.reuse.max_instance_concurrent_reuse_count.draw(),
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
    /// This instance's draw of `--max-instance-reuse-count`.
    max_total: usize,
    /// This instance's draw of `--max-instance-concurrent-reuse-count`.
    max_concurrent: usize,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_total {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
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
            (
                Draw::Value(128),
                Draw::Value(16),
                Draw::Value(Duration::from_secs(1))
            )
        );
    }

    #[test]
    fn counts_and_ranges_read_as_spin_reads_them() {
        let cases = [
            ("128", Some(Draw::Value(128))),
            ("1..8", Some(Draw::Range(1, 8))),
            ("0", None),
            ("8..1", None),
            ("4..4", None),
            ("x", None),
        ];
        for (text, want) in cases {
            assert_eq!(Draw::parse_count(text).ok(), want, "{text}");
        }
        assert_eq!(
            Draw::parse_duration("100ms..2s"),
            Ok(Draw::Range(
                Duration::from_millis(100),
                Duration::from_secs(2)
            ))
        );
        assert_eq!(
            Draw::parse_duration("1..8s"),
            Ok(Draw::Range(Duration::from_secs(1), Duration::from_secs(8)))
        );
    }

    #[test]
    fn every_draw_falls_in_its_range() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let n = Draw::Range(3, 7).draw();
            assert!((3..7).contains(&n), "{n}");
            seen.insert(n);
            let d = Draw::Range(Duration::from_millis(5), Duration::from_millis(6)).draw();
            assert!(
                d >= Duration::from_millis(5) && d < Duration::from_millis(6),
                "{d:?}"
            );
        }
        // Not one value for ever: the draw spreads.
        assert!(seen.len() > 1, "{seen:?}");
    }
}
