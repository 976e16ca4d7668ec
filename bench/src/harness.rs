//! `nano-bench host`: the apps of one shape, each a [`nanohost::RunningHost`] (the code
//! `nanohost up` runs), in ONE process, so that the outbound `publish` of the order app and the
//! trigger's receipt in the fulfilment app are timed on one monotonic clock.
//!
//! The hop is timed from nanohost's `tracing` spans and events of target `nanohost::hop`, each
//! with the message's `key` (its payload, or the request path for HTTP): a `send` span opens when
//! the host side of `publish` (or of an outbound request) is entered, a `received` event when the
//! trigger gets the message, and a `handle` span around the handler's export (after
//! instantiation). [`HopLayer`], a subscriber layer, notes when each opens and when `handle`
//! closes; it is enabled only while recording, so a host that is not being timed creates no span.
//!
//! Control is line-based on stdin/stdout, so the driver needs no extra port:
//! - on start-up it prints `{"ready": true}`;
//! - `hop-on` clears the hop samples and starts recording, `hop-off` stops and prints
//!   `{"hops": [[received_ns, handler_start_ns, handler_end_ns], ...]}` (relative to `send`);
//! - `quit` or the end of stdin (the driver died) shuts the hosts down.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use nanohost::{HostOptions, RunningHost};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::filter::{self, EnvFilter, FilterExt};
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The target of nanohost's hop spans and events.
const HOP_TARGET: &str = "nanohost::hop";

/// Where a message is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Point {
    /// The host side of `publish` (or an outbound HTTP request) was entered: `send` opened.
    Sent,
    /// The trigger got the message from the broker (or the HTTP request arrived): `received`.
    Received,
    /// The handler instance exists and its export is about to be called: `handle` opened.
    HandlerStart,
    /// The handler's export returned: `handle` closed.
    HandlerEnd,
}

/// One message's trip, on the process clock.
#[derive(Clone, Copy)]
struct Trip {
    sent: Instant,
    received: Option<Instant>,
    handler_start: Option<Instant>,
}

#[derive(Default)]
struct Recorder {
    on: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Trips under way, by message key (payload, or request path for HTTP), oldest first.
    open: HashMap<Vec<u8>, VecDeque<Trip>>,
    /// Completed trips: nanoseconds from `Sent` to received, handler start, handler end.
    done: Vec<[u64; 3]>,
}

impl Recorder {
    fn record(&self, point: Point, key: &[u8], at: Instant) {
        if !self.on.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if point == Point::Sent {
            inner.open.entry(key.to_vec()).or_default().push_back(Trip {
                sent: at,
                received: None,
                handler_start: None,
            });
            return;
        }
        let Some(queue) = inner.open.get_mut(key) else {
            return; // not a message we saw leave, e.g. the benchmark's own POST /order
        };
        let ns = |a: Instant, b: Instant| a.saturating_duration_since(b).as_nanos() as u64;
        match point {
            Point::Sent => unreachable!(),
            Point::Received => {
                if let Some(t) = queue.iter_mut().find(|t| t.received.is_none()) {
                    t.received = Some(at);
                }
            }
            Point::HandlerStart => {
                if let Some(t) = queue
                    .iter_mut()
                    .find(|t| t.received.is_some() && t.handler_start.is_none())
                {
                    t.handler_start = Some(at);
                }
            }
            Point::HandlerEnd => {
                let Some(i) = queue.iter().position(|t| t.handler_start.is_some()) else {
                    return;
                };
                let t = queue.remove(i).expect("index from position");
                if queue.is_empty() {
                    inner.open.remove(key);
                }
                let (r, s) = (
                    t.received.unwrap_or(t.sent),
                    t.handler_start.unwrap_or(t.sent),
                );
                inner
                    .done
                    .push([ns(r, t.sent), ns(s, t.sent), ns(at, t.sent)]);
            }
        }
    }
}

/// The `key` field of a hop span or event.
#[derive(Default)]
struct Key(Option<Vec<u8>>);

impl Visit for Key {
    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        if field.name() == "key" {
            self.0 = Some(value.to_vec());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_bytes(field, value.as_bytes());
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// The key of an open `handle` span, for its close.
struct HandleKey(Vec<u8>);

/// Times nanohost's hop spans into the [`Recorder`].
struct HopLayer(Arc<Recorder>);

impl HopLayer {
    /// Only nanohost's hop spans and events, and only while recording.
    fn filter<S>(recorder: Arc<Recorder>) -> impl tracing_subscriber::layer::Filter<S> {
        filter::filter_fn(|m: &Metadata<'_>| m.target() == HOP_TARGET).and(
            filter::dynamic_filter_fn(move |_, _| recorder.on.load(Ordering::Relaxed)),
        )
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for HopLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: LayerContext<'_, S>) {
        let at = Instant::now();
        let point = match attrs.metadata().name() {
            "send" => Point::Sent,
            "handle" => Point::HandlerStart,
            _ => return,
        };
        let mut key = Key::default();
        attrs.record(&mut key);
        let Some(key) = key.0 else { return };
        self.0.record(point, &key, at);
        if let (Point::HandlerStart, Some(span)) = (point, ctx.span(id)) {
            span.extensions_mut().insert(HandleKey(key));
        }
    }

    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let at = Instant::now();
        let mut key = Key::default();
        event.record(&mut key);
        if let Some(key) = key.0 {
            self.0.record(Point::Received, &key, at);
        }
    }

    fn on_close(&self, id: Id, ctx: LayerContext<'_, S>) {
        let at = Instant::now();
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        if let Some(HandleKey(key)) = extensions.get::<HandleKey>() {
            self.0.record(Point::HandlerEnd, key, at);
        }
    }
}

/// The hosts' log (warnings and errors only: nothing per request at this level) on stderr, and
/// the hop layer.
fn init_tracing(recorder: &Arc<Recorder>) {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(log_filter);
    let hops = HopLayer(recorder.clone()).with_filter(HopLayer::filter(recorder.clone()));
    tracing_subscriber::registry().with(log).with(hops).init();
}

/// `--app MANIFEST[@LISTEN]`, repeated.
pub fn parse_app(s: &str) -> Result<(PathBuf, SocketAddr)> {
    match s.rsplit_once('@') {
        Some((m, l)) => Ok((
            PathBuf::from(m),
            l.parse()
                .with_context(|| format!("bad listen address {l:?}"))?,
        )),
        None => Ok((PathBuf::from(s), "127.0.0.1:0".parse()?)),
    }
}

pub fn run(apps: Vec<(PathBuf, SocketAddr)>, runtime_config: Option<PathBuf>) -> Result<()> {
    let recorder = Arc::new(Recorder::default());
    init_tracing(&recorder);
    // The same runtime `nanohost up` builds: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let hosts = runtime.block_on(async {
        let mut hosts = Vec::new();
        for (manifest, listen) in apps {
            let host = RunningHost::start(HostOptions {
                manifest: manifest.clone(),
                runtime_config: runtime_config.clone(),
                listen,
                ..HostOptions::default()
            })
            .await
            .with_context(|| format!("cannot start {}", manifest.display()))?;
            hosts.push(host);
        }
        anyhow::Ok(hosts)
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::json!({ "ready": true }))?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "hop-on" => {
                let mut inner = recorder.inner.lock().unwrap_or_else(|e| e.into_inner());
                inner.open.clear();
                inner.done.clear();
                recorder.on.store(true, Ordering::SeqCst);
                writeln!(out, "{}", serde_json::json!({ "ok": true }))?;
            }
            "hop-off" => {
                recorder.on.store(false, Ordering::SeqCst);
                let inner = recorder.inner.lock().unwrap_or_else(|e| e.into_inner());
                writeln!(out, "{}", serde_json::json!({ "hops": inner.done }))?;
            }
            "quit" => break,
            other => writeln!(out, "{}", serde_json::json!({ "error": other }))?,
        }
        out.flush()?;
    }
    runtime.block_on(async {
        for h in hosts {
            let _ = h.shutdown().await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sink() -> (Arc<Recorder>, Arc<Recorder>) {
        let r = Arc::new(Recorder::default());
        r.on.store(true, Ordering::SeqCst);
        (r.clone(), r)
    }

    #[test]
    fn a_trip_is_matched_by_key_and_measured_from_sent() {
        let (s, r) = sink();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        s.record(Point::Sent, b"a", ms(0));
        s.record(Point::Sent, b"b", ms(1));
        s.record(Point::Received, b"b", ms(3));
        s.record(Point::Received, b"a", ms(4));
        s.record(Point::HandlerStart, b"a", ms(5));
        s.record(Point::HandlerEnd, b"a", ms(9));
        // Something the benchmark never sent (its own POST /order) is ignored.
        s.record(Point::Received, b"/order", ms(9));
        let inner = r.inner.lock().unwrap();
        assert_eq!(inner.done, vec![[4_000_000, 5_000_000, 9_000_000]]);
        assert_eq!(inner.open.len(), 1, "b is still under way");
    }

    #[test]
    fn one_key_several_trips_are_first_in_first_out() {
        let (s, r) = sink();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        for (i, at) in [0, 10].into_iter().enumerate() {
            s.record(Point::Sent, b"/fulfil", ms(at));
            s.record(Point::Received, b"/fulfil", ms(at + 1 + i as u64));
            s.record(Point::HandlerStart, b"/fulfil", ms(at + 2 + i as u64));
            s.record(Point::HandlerEnd, b"/fulfil", ms(at + 3 + i as u64));
        }
        let inner = r.inner.lock().unwrap();
        assert_eq!(
            inner.done,
            vec![
                [1_000_000, 2_000_000, 3_000_000],
                [2_000_000, 3_000_000, 4_000_000]
            ]
        );
        assert!(inner.open.is_empty());
    }

    #[test]
    fn nothing_is_recorded_while_off() {
        let (s, r) = sink();
        r.on.store(false, Ordering::SeqCst);
        let now = Instant::now();
        s.record(Point::Sent, b"a", now);
        s.record(Point::HandlerEnd, b"a", now);
        assert!(r.inner.lock().unwrap().open.is_empty());
    }

    #[test]
    fn the_layer_times_nanohosts_hop_spans_and_nothing_else() {
        let r = Arc::new(Recorder::default());
        let layer = HopLayer(r.clone()).with_filter(HopLayer::filter(r.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        let hop = |key: &[u8]| {
            let send = tracing::trace_span!(target: "nanohost::hop", "send", key = key);
            tracing::trace!(target: "nanohost::hop", key = key, "received");
            drop(tracing::trace_span!(target: "nanohost::hop", "handle", key = key));
            drop(send);
        };
        tracing::subscriber::with_default(subscriber, || {
            hop(b"while off");
            r.on.store(true, Ordering::SeqCst);
            hop(b"order 1");
            // HTTP's key is the request path, a string.
            let _send = tracing::trace_span!(target: "nanohost::hop", "send", key = "/fulfil");
            tracing::trace!(target: "nanohost::hop", key = "/fulfil", "received");
            drop(tracing::trace_span!(target: "nanohost::hop", "handle", key = "/fulfil"));
            // The same names from another target are not hops.
            drop(tracing::trace_span!(target: "elsewhere", "send", key = b"x".as_slice()));
        });
        let inner = r.inner.lock().unwrap();
        assert_eq!(inner.done.len(), 2, "{:?}", inner.done);
        for [received, called, returned] in &inner.done {
            assert!(received <= called && called <= returned);
        }
        assert!(inner.open.is_empty(), "nothing half-recorded");
    }

    #[test]
    fn apps_parse_with_and_without_a_listen_address() {
        let (m, l) = parse_app("apps/x/spin.toml@127.0.0.1:3001").unwrap();
        assert_eq!(m, PathBuf::from("apps/x/spin.toml"));
        assert_eq!(l.port(), 3001);
        assert_eq!(parse_app("spin.toml").unwrap().1.port(), 0);
    }
}
