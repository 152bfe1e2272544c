//! Threads, each with its share of the sessions (used in turn), looping
//! one prepared operation until the deadline; latencies of the measured
//! window only.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use cryptoki::session::Session;

use crate::ops::{Prepared, ck_error};

/// What the threads measured together.
#[derive(Debug)]
pub struct Measurement {
    /// Operations that succeeded in the measured window.
    pub ops: u64,
    /// Operations that failed in the measured window.
    pub errors: u64,
    /// The first error seen (warm-up included), for the report.
    pub first_error: Option<String>,
    /// From the end of the warm-up to the end of the last measured operation.
    pub window: Duration,
    /// Latency of every successful measured operation, sorted, in ns.
    pub latencies_ns: Vec<u64>,
}

struct ThreadResult {
    ops: u64,
    errors: u64,
    first_error: Option<String>,
    measure_start: Instant,
    last_end: Instant,
    latencies_ns: Vec<u64>,
}

/// Runs `prepared` on `threads` threads that share `sessions` out (thread
/// i takes sessions i, i + threads, ... and uses them in turn): all start
/// together, warm up for `warmup`, then start operations until `duration`
/// has passed; an operation started before the deadline is waited for and
/// counted.
pub fn measure(
    prepared: &Prepared,
    sessions: &mut [Session],
    threads: usize,
    warmup: Duration,
    duration: Duration,
) -> Measurement {
    let threads = threads.clamp(1, sessions.len().max(1));
    let mut groups: Vec<Vec<&mut Session>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, session) in sessions.iter_mut().enumerate() {
        groups[i % threads].push(session);
    }
    let barrier = Barrier::new(threads);
    let joined: Vec<Option<ThreadResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                let barrier = &barrier;
                scope.spawn(move || worker(prepared, group, barrier, warmup, duration))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().ok())
            .collect()
    });
    let panicked = joined.iter().filter(|r| r.is_none()).count();
    let results: Vec<ThreadResult> = joined.into_iter().flatten().collect();
    let mut total = Measurement {
        ops: 0,
        errors: 0,
        first_error: None,
        window: Duration::ZERO,
        latencies_ns: Vec::new(),
    };
    let start = results.iter().map(|r| r.measure_start).min();
    let end = results.iter().map(|r| r.last_end).max();
    if let (Some(start), Some(end)) = (start, end) {
        total.window = end.saturating_duration_since(start);
    }
    for mut result in results {
        total.ops += result.ops;
        total.errors += result.errors;
        if total.first_error.is_none() {
            total.first_error = result.first_error.take();
        }
        total.latencies_ns.append(&mut result.latencies_ns);
    }
    if panicked > 0 {
        total.errors += panicked as u64;
        total.first_error = Some(format!("{panicked} worker thread(s) panicked"));
    }
    total.latencies_ns.sort_unstable();
    total
}

fn worker(
    prepared: &Prepared,
    sessions: Vec<&mut Session>,
    barrier: &Barrier,
    warmup: Duration,
    duration: Duration,
) -> ThreadResult {
    let mut scratch = Vec::new();
    barrier.wait();
    let begin = Instant::now();
    let measure_start = begin + warmup;
    let deadline = measure_start + duration;
    let mut result = ThreadResult {
        ops: 0,
        errors: 0,
        first_error: None,
        measure_start,
        last_end: measure_start,
        latencies_ns: Vec::with_capacity(1024),
    };
    for turn in 0usize.. {
        let started = Instant::now();
        if started >= deadline || sessions.is_empty() {
            break;
        }
        let outcome = prepared.run(sessions[turn % sessions.len()], &mut scratch);
        let ended = Instant::now();
        if let Err(e) = &outcome
            && result.first_error.is_none()
        {
            result.first_error = Some(ck_error(e));
        }
        if started < measure_start {
            continue;
        }
        result.last_end = ended;
        match outcome {
            Ok(()) => {
                result.ops += 1;
                let ns = ended.duration_since(started).as_nanos();
                result
                    .latencies_ns
                    .push(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            Err(_) => result.errors += 1,
        }
    }
    result
}

/// The `p`-th percentile (0 < p <= 1) of sorted values, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50);
        assert_eq!(percentile(&values, 0.99), 99);
        assert_eq!(percentile(&values, 1.0), 100);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
