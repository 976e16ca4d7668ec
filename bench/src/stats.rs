//! The statistics of paired measurements: a median, nearest-rank percentiles, and a bootstrap
//! interval for the median. (Latency percentiles of single measurements come from HdrHistogram,
//! `load::summarize`.)

/// The median: the middle value, or the mean of the two middle values of an even count; 0 when
/// there is none. Reorders `v`.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let (mid, odd) = (v.len() / 2, v.len() % 2 == 1);
    let (below, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if odd {
        return m;
    }
    let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lower + m) / 2.0
}

/// The nearest-rank `q` quantile of sorted values (the smallest value with at least a `q` share of
/// the values at or below it, as HdrHistogram reports its percentiles); 0 when there is none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median and its bootstrap 95% percentile interval: `resamples` resamples with replacement,
/// from a fixed seed so a rerun on the same data gives the same interval.
pub fn median_ci(data: &[f64], resamples: usize, seed: u64) -> (f64, f64, f64) {
    let m = median(&mut data.to_vec());
    if data.is_empty() || resamples == 0 {
        return (m, m, m);
    }
    // xorshift64*: enough randomness for resampling, no dependency.
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut medians = Vec::with_capacity(resamples);
    let mut sample = vec![0.0; data.len()];
    for _ in 0..resamples {
        for x in sample.iter_mut() {
            *x = data[(next() % data.len() as u64) as usize];
        }
        medians.push(median(&mut sample));
    }
    medians.sort_by(f64::total_cmp);
    let at = |q: f64| medians[(q * (resamples - 1) as f64).round() as usize];
    (m, at(0.025), at(0.975))
}

/// What a run of paired calls (with − without the thing measured, each pair run back to back)
/// says about the difference, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Paired {
    pub pairs: u64,
    /// Median of the differences.
    pub median_ns: f64,
    /// Its bootstrap 95% interval (1,000 resamples).
    pub ci95_ns: (f64, f64),
    pub p90_ns: f64,
    pub p99_ns: f64,
}

/// The differences `with[i] − without[i]` of paired calls, summarised; `seed` fixes the
/// bootstrap's resamples.
pub fn paired(diffs: &[f64], seed: u64) -> Paired {
    let (median_ns, lo, hi) = median_ci(diffs, 1000, seed);
    let mut sorted = diffs.to_vec();
    sorted.sort_by(f64::total_cmp);
    Paired {
        pairs: diffs.len() as u64,
        median_ns,
        ci95_ns: (lo, hi),
        p90_ns: quantile(&sorted, 0.90),
        p99_ns: quantile(&sorted, 0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_known_samples() {
        let cases: &[(&[f64], f64)] = &[
            (&[], 0.0),
            (&[7.0], 7.0),
            (&[3.0, 1.0, 2.0], 2.0),
            (&[4.0, 1.0, 3.0, 2.0], 2.5),
            (&[5.0, 5.0, 5.0, 1.0], 5.0),
            (&[-3.0, 1.0], -1.0),
            (&[2.0, 2.0, 9.0, 9.0], 5.5),
        ];
        for (data, want) in cases {
            assert_eq!(median(&mut data.to_vec()), *want, "{data:?}");
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases: &[(&[f64], f64, f64)] = &[
            (&[], 0.5, 0.0),
            (&[4.0], 0.99, 4.0),
            (&[4.0], 0.0, 4.0),
            (&ten, 0.9, 9.0),
            (&ten, 0.91, 10.0),
            (&ten, 0.5, 5.0),
            (&ten, 1.0, 10.0),
            (&hundred, 0.99, 99.0),
            (&hundred, 0.9, 90.0),
            (&[1.0, 1.0, 1.0, 8.0], 0.75, 1.0),
        ];
        for (sorted, q, want) in cases {
            assert_eq!(quantile(sorted, *q), *want, "q {q} of {sorted:?}");
        }
    }

    #[test]
    fn paired_differences_of_known_pairs() {
        let diffs: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = paired(&diffs, 1);
        assert_eq!(p.pairs, 100);
        assert_eq!(p.median_ns, 50.5);
        assert_eq!((p.p90_ns, p.p99_ns), (90.0, 99.0));
        assert!(p.ci95_ns.0 <= 50.5 && 50.5 <= p.ci95_ns.1, "{p:?}");
        assert_eq!(paired(&[], 1), Paired::default());
    }

    #[test]
    fn the_interval_of_one_value_or_of_ties_is_that_value() {
        assert_eq!(median_ci(&[42.0], 200, 3), (42.0, 42.0, 42.0));
        assert_eq!(median_ci(&[5.0; 40], 200, 3), (5.0, 5.0, 5.0));
        assert_eq!(median_ci(&[], 200, 3), (0.0, 0.0, 0.0));
        assert_eq!(median_ci(&[1.0, 9.0], 0, 3), (5.0, 5.0, 5.0));
    }

    #[test]
    fn the_interval_holds_the_median_narrows_with_more_data_and_repeats() {
        let data: Vec<f64> = (0..1001).map(|i| (i % 101) as f64).collect();
        let (m, lo, hi) = median_ci(&data, 500, 7);
        assert_eq!(m, 50.0);
        assert!(lo <= m && m <= hi, "{lo} {m} {hi}");
        assert!(hi - lo <= 10.0, "{lo}..{hi}");
        let few: Vec<f64> = data.iter().copied().step_by(50).collect();
        let (_, flo, fhi) = median_ci(&few, 500, 7);
        assert!(fhi - flo > hi - lo, "{flo}..{fhi} vs {lo}..{hi}");
        assert_eq!(median_ci(&few, 500, 7), median_ci(&few, 500, 7));
    }

    #[test]
    fn a_shifted_sample_shifts_the_interval() {
        let data: Vec<f64> = (0..301).map(|i| ((i * 37) % 301) as f64).collect();
        let shifted: Vec<f64> = data.iter().map(|x| x + 1000.0).collect();
        let (m, lo, hi) = median_ci(&data, 300, 11);
        let (sm, slo, shi) = median_ci(&shifted, 300, 11);
        assert_eq!((sm, slo, shi), (m + 1000.0, lo + 1000.0, hi + 1000.0));
    }
}
