//! The load: the same phases, in the same order, against every shape.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::client::Conn;

/// Percentiles of a histogram of nanoseconds, reported in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Summary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

pub fn histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits: 0.1% resolution.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    Summary {
        count: h.len(),
        p50_us: us(h.value_at_quantile(0.50)),
        p90_us: us(h.value_at_quantile(0.90)),
        p99_us: us(h.value_at_quantile(0.99)),
        max_us: us(h.max()),
        mean_us: h.mean() / 1000.0,
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let _ = h.record((d.as_nanos() as u64).max(1));
}

/// How often the end-to-end phase polls `GET` after a first, immediate try.
pub const POLL_INTERVAL: Duration = Duration::from_micros(200);
/// Give up on an order that is not fulfilled after this long (it counts as lost).
const FULFIL_DEADLINE: Duration = Duration::from_secs(10);

/// `n` sequential `POST /order` on one connection: accept latency.
pub async fn accept(addr: SocketAddr, n: u64, pb: &ProgressBar) -> Result<Summary> {
    let mut conn = Conn::open(addr).await?;
    let mut h = histogram();
    for i in 0..n {
        let t = Instant::now();
        conn.place(&format!("accept {i}")).await?;
        record(&mut h, t.elapsed());
        pb.inc(1);
    }
    Ok(summarize(&h))
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct EndToEnd {
    pub latency: Summary,
    /// GETs per order, including the one that saw `fulfilled`.
    pub mean_gets: f64,
    pub lost: u64,
}

/// `n` orders one after the other: `POST`, then `GET` at once and every [`POLL_INTERVAL`]
/// until it says `fulfilled`. Latency = POST sent → the GET answer that says `fulfilled`.
/// One connection each for POST and GET, as a client polling a 202's Location would.
pub async fn end_to_end(addr: SocketAddr, n: u64, pb: &ProgressBar) -> Result<EndToEnd> {
    let mut post = Conn::open(addr).await?;
    let mut get = Conn::open(addr).await?;
    let mut h = histogram();
    let (mut gets, mut lost) = (0u64, 0u64);
    for i in 0..n {
        let t = Instant::now();
        let id = post.place(&format!("e2e {i}")).await?;
        loop {
            gets += 1;
            if get.is_fulfilled(&id).await? {
                record(&mut h, t.elapsed());
                break;
            }
            if t.elapsed() > FULFIL_DEADLINE {
                lost += 1;
                break;
            }
            // A blocking sleep: tokio's timer has 1 ms granularity. The client runs on a
            // current-thread runtime with nothing else to do meanwhile.
            std::thread::sleep(POLL_INTERVAL);
        }
        pb.inc(1);
    }
    Ok(EndToEnd {
        latency: summarize(&h),
        mean_gets: gets as f64 / n.max(1) as f64,
        lost,
    })
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Throughput {
    pub concurrency: u64,
    pub orders: u64,
    pub seconds: f64,
    pub orders_per_s: f64,
    /// Accept latency under this load.
    pub latency: Summary,
    pub errors: u64,
    /// Accepted orders not `fulfilled` within 10 s of the end of the load.
    pub lost: u64,
}

/// `orders` POSTs spread over `concurrency` connections, each sending its next request when
/// the previous one is answered (closed loop). Then checks every accepted order is fulfilled.
pub async fn throughput(
    addr: SocketAddr,
    concurrency: u64,
    orders: u64,
    pb: &ProgressBar,
) -> Result<Throughput> {
    Ok(throughput_then(addr, concurrency, orders, pb, || ())
        .await?
        .0)
}

/// [`throughput`], calling `loaded` as soon as the last order is answered (before the accepted
/// orders are polled until fulfilled), so that a caller can take readings of the load alone.
pub async fn throughput_then<T>(
    addr: SocketAddr,
    concurrency: u64,
    orders: u64,
    pb: &ProgressBar,
    loaded: impl FnOnce() -> T,
) -> Result<(Throughput, T)> {
    let mut tasks = Vec::new();
    let start = Instant::now();
    for c in 0..concurrency {
        let share = orders / concurrency + u64::from(c < orders % concurrency);
        let pb = pb.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut h = histogram();
            let mut ids = Vec::with_capacity(share as usize);
            let mut errors = 0u64;
            for i in 0..share {
                let t = Instant::now();
                match conn.place(&format!("load {c}/{i}")).await {
                    Ok(id) => {
                        record(&mut h, t.elapsed());
                        ids.push(id);
                    }
                    Err(_) => {
                        errors += 1;
                        conn = Conn::open(addr).await?;
                    }
                }
                pb.inc(1);
            }
            anyhow::Ok((h, ids, errors))
        }));
    }
    let mut h = histogram();
    let mut ids = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (th, tids, terr) = t.await??;
        h.add(&th)?;
        ids.extend(tids);
        errors += terr;
    }
    let seconds = start.elapsed().as_secs_f64();
    let reading = loaded();
    let lost = count_unfulfilled(addr, &ids, concurrency.min(16)).await?;
    let throughput = Throughput {
        concurrency,
        orders,
        seconds,
        orders_per_s: ids.len() as f64 / seconds,
        latency: summarize(&h),
        errors,
        lost,
    };
    Ok((throughput, reading))
}

/// How many of `ids` are still not `fulfilled` after waiting up to 10 s.
async fn count_unfulfilled(addr: SocketAddr, ids: &[String], conns: u64) -> Result<u64> {
    let deadline = Instant::now() + FULFIL_DEADLINE;
    let chunk = ids.len().div_ceil(conns.max(1) as usize).max(1);
    let mut tasks = Vec::new();
    for part in ids.chunks(chunk) {
        let part = part.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut lost = 0u64;
            for id in part {
                loop {
                    if conn.is_fulfilled(&id).await? {
                        break;
                    }
                    if Instant::now() > deadline {
                        lost += 1;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            anyhow::Ok(lost)
        }));
    }
    let mut lost = 0;
    for t in tasks {
        lost += t.await??;
    }
    Ok(lost)
}

/// Sequential then concurrent requests, discarded: JIT-free wasm still has cold caches,
/// connection pools and broker subscriptions to settle.
pub async fn warm_up(addr: SocketAddr, n: u64, concurrency: u64, pb: &ProgressBar) -> Result<()> {
    let sequential = n / 2;
    let mut conn = Conn::open(addr).await?;
    for i in 0..sequential {
        let id = conn.place(&format!("warm-up {i}")).await?;
        let _ = conn.is_fulfilled(&id).await?;
        pb.inc(1);
    }
    let t = throughput(addr, concurrency, n - sequential, pb).await?;
    if t.errors > 0 {
        bail!("{} requests failed while warming up", t.errors);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(ns: &[u64]) -> Summary {
        let mut h = histogram();
        for &v in ns {
            h.record(v).unwrap();
        }
        summarize(&h)
    }

    /// Within HdrHistogram's 3 significant digits.
    fn near(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 1e-3
    }

    #[test]
    fn percentiles_of_known_samples() {
        // 1..=100 µs: nearest-rank percentiles.
        let s = summary_of(&(1..=100).map(|us| us * 1000).collect::<Vec<_>>());
        assert_eq!(s.count, 100);
        for (got, want) in [
            (s.p50_us, 50.0),
            (s.p90_us, 90.0),
            (s.p99_us, 99.0),
            (s.max_us, 100.0),
            (s.mean_us, 50.5),
        ] {
            assert!(near(got, want), "{got} vs {want}: {s:?}");
        }
    }

    #[test]
    fn no_sample_one_sample_and_ties() {
        let empty = summary_of(&[]);
        assert_eq!((empty.count, empty.p50_us, empty.max_us), (0, 0.0, 0.0));
        let one = summary_of(&[1234]);
        assert_eq!(one.count, 1);
        for v in [one.p50_us, one.p90_us, one.p99_us, one.max_us, one.mean_us] {
            assert!(near(v, 1.234), "{one:?}");
        }
        let ties = summary_of(&[5000; 10]);
        assert!(near(ties.p50_us, 5.0) && near(ties.p99_us, 5.0), "{ties:?}");
        assert!(near(ties.max_us, 5.0), "{ties:?}");
    }
}
