//! Per-device metrics, for `GET /metrics`: calls and errors (counters: the
//! calls per second are their `rate()`), calls in flight and callers
//! waiting for a device session (gauges: the device's queue depth), calls
//! refused after waiting, whether the device is in service, and a histogram
//! of call latency. Atomics only: nothing on a call's path takes a lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];

#[derive(Debug, Default)]
pub struct DeviceMetrics {
    calls: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicU64,
    waiting: AtomicU64,
    waited_out: AtomicU64,
    /// Calls per latency bucket (not cumulative; the last is +Inf).
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

/// A call in flight; counted when it ends.
#[derive(Debug)]
pub struct InFlight<'a> {
    metrics: &'a DeviceMetrics,
    started: std::time::Instant,
}

impl InFlight<'_> {
    /// The call ended, with `ok` its outcome.
    pub fn end(self, ok: bool) {
        let m = self.metrics;
        let took = self.started.elapsed();
        m.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            m.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        m.sum_us.fetch_add(us, Ordering::Relaxed);
        let bucket = BUCKETS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BUCKETS_US.len());
        m.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        // `Drop` decrements in_flight.
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DeviceMetrics {
    /// A device call begins.
    pub fn call(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            metrics: self,
            started: std::time::Instant::now(),
        }
    }

    /// A caller starts or stops waiting for a device session.
    pub fn waiting(&self, starts: bool) {
        if starts {
            self.waiting.fetch_add(1, Ordering::Relaxed);
        } else {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A caller waited `session_wait_ms` in vain.
    pub fn waited_out(&self) {
        self.waited_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls so far (for tests).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The Prometheus lines of device `name` (`up`: in service).
    pub fn render(&self, name: &str, up: bool, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let d = format!("device=\"{name}\"");
        let _ = writeln!(
            out,
            "hsmlink_device_calls_total{{{d}}} {}",
            get(&self.calls)
        );
        let _ = writeln!(
            out,
            "hsmlink_device_errors_total{{{d}}} {}",
            get(&self.errors)
        );
        let _ = writeln!(
            out,
            "hsmlink_device_calls_in_flight{{{d}}} {}",
            get(&self.in_flight)
        );
        let _ = writeln!(
            out,
            "hsmlink_device_queue_depth{{{d}}} {}",
            get(&self.waiting)
        );
        let _ = writeln!(
            out,
            "hsmlink_device_waits_timed_out_total{{{d}}} {}",
            get(&self.waited_out)
        );
        let _ = writeln!(out, "hsmlink_device_up{{{d}}} {}", u8::from(up));
        let mut cumulative = 0;
        for (bound, n) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += get(n);
            let le = Duration::from_micros(*bound).as_secs_f64();
            let _ = writeln!(
                out,
                "hsmlink_device_call_seconds_bucket{{{d},le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += get(&self.buckets[BUCKETS_US.len()]);
        let _ = writeln!(
            out,
            "hsmlink_device_call_seconds_bucket{{{d},le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "hsmlink_device_call_seconds_sum{{{d}}} {}",
            get(&self.sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "hsmlink_device_call_seconds_count{{{d}}} {cumulative}");
    }

    /// The `# HELP` and `# TYPE` lines of the families above.
    pub fn header(out: &mut String) {
        for (name, kind, help) in [
            (
                "hsmlink_device_calls_total",
                "counter",
                "Calls into the device (its rate is the device's calls per second).",
            ),
            (
                "hsmlink_device_errors_total",
                "counter",
                "Device calls that failed.",
            ),
            (
                "hsmlink_device_calls_in_flight",
                "gauge",
                "Device calls running now.",
            ),
            (
                "hsmlink_device_queue_depth",
                "gauge",
                "Calls waiting for a free device session now.",
            ),
            (
                "hsmlink_device_waits_timed_out_total",
                "counter",
                "Calls that waited session_wait_ms for a device session in vain (CKR_DEVICE_MEMORY).",
            ),
            (
                "hsmlink_device_up",
                "gauge",
                "1 while the device is in service, 0 while it is out (failed, being checked).",
            ),
            (
                "hsmlink_device_call_seconds",
                "histogram",
                "Latency of device calls.",
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_errors_and_latency_are_counted() {
        let m = DeviceMetrics::default();
        m.call().end(true);
        m.call().end(false);
        let pending = m.call();
        m.waiting(true);
        let mut out = String::new();
        m.render("dev0", true, &mut out);
        assert!(
            out.contains("hsmlink_device_calls_total{device=\"dev0\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("hsmlink_device_errors_total{device=\"dev0\"} 1\n"));
        assert!(out.contains("hsmlink_device_calls_in_flight{device=\"dev0\"} 1\n"));
        assert!(out.contains("hsmlink_device_queue_depth{device=\"dev0\"} 1\n"));
        assert!(
            out.contains("hsmlink_device_call_seconds_bucket{device=\"dev0\",le=\"+Inf\"} 2\n")
        );
        assert!(out.contains("hsmlink_device_call_seconds_count{device=\"dev0\"} 2\n"));
        assert!(out.contains("hsmlink_device_up{device=\"dev0\"} 1\n"));
        drop(pending);
        m.waiting(false);
        let mut out = String::new();
        m.render("dev0", false, &mut out);
        assert!(out.contains("hsmlink_device_calls_in_flight{device=\"dev0\"} 0\n"));
        assert!(out.contains("hsmlink_device_queue_depth{device=\"dev0\"} 0\n"));
        assert!(out.contains("hsmlink_device_up{device=\"dev0\"} 0\n"));
        // Buckets are cumulative and end at the count.
        let buckets: Vec<u64> = out
            .lines()
            .filter(|l| l.starts_with("hsmlink_device_call_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(buckets.last(), Some(&2));
    }
}
