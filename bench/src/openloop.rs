//! Open-loop load: orders arrive at a fixed rate whatever the server does, and each one's latency
//! runs from the moment it was *meant* to be sent, so time spent queued behind a slow answer
//! counts (no coordinated omission, unlike the closed-loop phases).
//!
//! A pacing thread sleeps to each intended send time (a plain `thread::sleep`: Linux wakes it
//! ~50-100 µs late, which counts against the server, never for it) and hands the time to the
//! client runtime, which sends on a free connection from a pool. When every connection is busy
//! the order waits for one: that wait is queueing, and is in its latency.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::client::Conn;
use crate::load::{histogram, summarize, Summary};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RatePoint {
    /// Orders per second asked for.
    pub offered: f64,
    /// Orders answered 202 per second, over the time from the first intended send to the last
    /// answer.
    pub achieved: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Intended send time → 202 received.
    pub latency: Summary,
    /// Details length of each order, bytes.
    pub details_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Sweep {
    pub seconds_per_rate: f64,
    pub connections: u64,
    pub points: Vec<RatePoint>,
    /// Why the sweep stopped before the last rate, if it did.
    pub stopped: Option<String>,
}

const MAX_BEHIND: Duration = Duration::from_secs(5);

/// A run is saturated past this: it is the knee, and higher rates only queue more.
pub fn saturated(p: &RatePoint) -> bool {
    p.achieved < 0.9 * p.offered || p.latency.p50_us > 20_000.0 || p.errors * 100 > p.sent
}

/// Details of `len` bytes (at least the counter), different per order.
fn details(len: usize, i: u64) -> String {
    let mut s = format!("{i} ");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// `rate` orders per second for `seconds`, over a pool of `connections`.
pub async fn run_rate(
    addr: SocketAddr,
    rate: f64,
    seconds: f64,
    connections: u64,
    details_bytes: usize,
) -> Result<RatePoint> {
    let total = (rate * seconds).round().max(1.0) as u64;
    let (free_tx, mut free_rx) = tokio::sync::mpsc::unbounded_channel::<Conn>();
    for _ in 0..connections {
        free_tx.send(Conn::open(addr).await?).ok();
    }
    let (due_tx, mut due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    // Start a little ahead, so the first sends are not late because the thread is new.
    let t0 = Instant::now() + Duration::from_millis(5);
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let at = t0 + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if due_tx.send((i, at)).is_err() {
                break;
            }
        }
    });
    let h = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(Mutex::new(0u64));
    let last = Arc::new(Mutex::new(t0));
    let mut tasks = Vec::with_capacity(total as usize);
    let mut abandoned = 0u64;
    while let Some((i, intended)) = due_rx.recv().await {
        // Past the knee the queue only grows: once an order is 5 s late, the rest are not sent
        // (counted as errors), which keeps a saturated rate from stretching the run.
        let conn = if intended.elapsed() > MAX_BEHIND {
            None
        } else {
            tokio::time::timeout(MAX_BEHIND, free_rx.recv())
                .await
                .ok()
                .flatten()
        };
        let Some(mut conn) = conn else {
            abandoned = total - i;
            break;
        };
        let (h, errors, last, free_tx) = (h.clone(), errors.clone(), last.clone(), free_tx.clone());
        let body = details(details_bytes, i);
        tasks.push(tokio::spawn(async move {
            match conn.place(&body).await {
                Ok(_) => {
                    let now = Instant::now();
                    let ns = now.saturating_duration_since(intended).as_nanos() as u64;
                    let _ = h.lock().unwrap().record(ns.max(1));
                    let mut l = last.lock().unwrap();
                    if now > *l {
                        *l = now;
                    }
                }
                Err(_) => {
                    *errors.lock().unwrap() += 1;
                    match Conn::open(addr).await {
                        Ok(c) => conn = c,
                        Err(_) => return,
                    }
                }
            }
            let _ = free_tx.send(conn);
        }));
    }
    drop(due_rx);
    let _ = pacer.join();
    for t in tasks {
        let _ = t.await;
    }
    let h = h.lock().unwrap().clone();
    let elapsed = last.lock().unwrap().saturating_duration_since(t0);
    let failed = *errors.lock().unwrap();
    let ok = h.len();
    Ok(RatePoint {
        offered: rate,
        achieved: ok as f64 / elapsed.as_secs_f64().max(1e-9),
        sent: total,
        ok,
        errors: failed + abandoned,
        latency: summarize(&h),
        details_bytes,
    })
}

/// Each rate in turn, stopping after the first saturated one (the knee).
pub async fn sweep(
    addr: SocketAddr,
    rates: &[f64],
    seconds: f64,
    connections: u64,
    details_bytes: usize,
) -> Result<Sweep> {
    let mut points = Vec::new();
    let mut stopped = None;
    for (k, &rate) in rates.iter().enumerate() {
        let p = run_rate(addr, rate, seconds, connections, details_bytes).await?;
        let done = saturated(&p);
        points.push(p);
        if done {
            if k + 1 < rates.len() {
                stopped = Some(format!(
                    "saturated at {rate:.0} orders/s (achieved under 90% of offered, p50 over 20 ms or over 1% errors); higher rates not run"
                ));
            }
            break;
        }
    }
    Ok(Sweep {
        seconds_per_rate: seconds,
        connections,
        points,
        stopped,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn details_have_the_asked_length_and_differ() {
        assert_eq!(super::details(1024, 7).len(), 1024);
        assert_ne!(super::details(64, 1), super::details(64, 2));
        assert_eq!(super::details(1, 123), "123 ");
    }
}
