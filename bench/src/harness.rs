//! `nano-bench host`: the apps of one shape, each a [`nanohost::RunningHost`] (the code
//! `nanohost up` runs), in ONE process, so that the outbound `publish` of the order app and the
//! trigger's receipt in the fulfilment app are timed on one monotonic clock.
//!
//! Control is line-based on stdin/stdout, so the driver needs no extra port:
//! - on start-up it prints `{"ready": true}`;
//! - `hop-on` clears the hop samples and starts recording, `hop-off` stops and prints
//!   `{"hops": [[received_ns, handler_start_ns, handler_end_ns], ...]}` (relative to `Sent`);
//! - `quit` or the end of stdin (the driver died) shuts the hosts down.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use nanohost::hop::{HopSink, Point};
use nanohost::{HostOptions, RunningHost};

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

struct Sink(Arc<Recorder>);

impl HopSink for Sink {
    fn record(&self, point: Point, key: &[u8], at: Instant) {
        if !self.0.on.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = self.0.inner.lock().unwrap_or_else(|e| e.into_inner());
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
    nanohost::hop::install(Box::new(Sink(recorder.clone())));
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

    fn sink() -> (Sink, Arc<Recorder>) {
        let r = Arc::new(Recorder::default());
        r.on.store(true, Ordering::SeqCst);
        (Sink(r.clone()), r)
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
    fn apps_parse_with_and_without_a_listen_address() {
        let (m, l) = parse_app("apps/x/spin.toml@127.0.0.1:3001").unwrap();
        assert_eq!(m, PathBuf::from("apps/x/spin.toml"));
        assert_eq!(l.port(), 3001);
        assert_eq!(parse_app("spin.toml").unwrap().1.port(), 0);
    }
}
