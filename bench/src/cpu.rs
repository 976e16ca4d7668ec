//! CPU time, to say where a throughput difference goes when wall-clock figures are noisy: the
//! machine is shared, but the CPU a process spends per order hardly depends on who else runs.

use std::time::Duration;

use anyhow::{Context, Result};

/// CPU time (user + system) of process `pid` so far, every thread it ever had included
/// (`/proc/<pid>/stat` fields 14 and 15, in clock ticks: 10 ms resolution on Linux).
pub fn of_process(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("no /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it do not.
    let rest = stat
        .rfind(')')
        .map(|end| &stat[end + 2..])
        .context("no command name in /proc/<pid>/stat")?;
    let mut fields = rest.split_whitespace().skip(11);
    let mut ticks = 0u64;
    for _ in 0..2 {
        ticks += fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .context("no utime/stime in /proc/<pid>/stat")?;
    }
    // SAFETY: sysconf only reads a constant.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// CPU time of this process so far, every thread included, with nanosecond resolution.
pub fn of_self() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work done by this thread shows up in both readings of this process: spin until the
    /// fine clock says 50 ms of CPU, then the ticks must say at least 40 (10 ms resolution).
    #[test]
    fn both_readings_count_this_process_s_work() {
        let (ticks, fine) = (of_process(std::process::id()).unwrap(), of_self());
        let mut x = 0u64;
        while of_self() - fine < Duration::from_millis(50) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        let ticks = of_process(std::process::id()).unwrap() - ticks;
        assert!(ticks >= Duration::from_millis(40), "{ticks:?}");
    }
}
