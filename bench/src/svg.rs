//! An SVG plot of throughput and p99 latency against concurrency (threads),
//! one line per (peer, operation, size), from the records of one or more
//! runs.
//!
//! Written by hand rather than with `plotters`: two panels of polylines,
//! axes and a legend are ~150 lines of string formatting, the output is
//! deterministic and testable as text, and the tool keeps no font, image or
//! drawing dependency (the SVG viewer renders the text).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::Record;

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 300.0;
const TOP: f64 = 40.0;
const GAP: f64 = 70.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One line: its (threads, value) points; its name is in the legend.
struct Series {
    points: Vec<(usize, f64)>,
}

/// The plot of `records` (those with status "ok"); `title` on top.
pub fn plot(records: &[Record], title: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut by_name: BTreeMap<String, BTreeMap<usize, (f64, f64)>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.status == "ok") {
        let mut name = format!("{} {}", r.peer, r.op);
        if r.bulk || r.bytes_per_op != 32 {
            let _ = write!(name, " {} B", r.bytes_per_op);
        }
        if !by_name.contains_key(&name) {
            order.push(name.clone());
        }
        by_name
            .entry(name)
            .or_default()
            .insert(r.threads, (r.ops_per_s, r.latency_us.p99 / 1000.0));
    }
    let series = |pick: fn(&(f64, f64)) -> f64| -> Vec<Series> {
        order
            .iter()
            .map(|name| Series {
                points: by_name
                    .get(name)
                    .map(|p| p.iter().map(|(t, v)| (*t, pick(v))).collect())
                    .unwrap_or_default(),
            })
            .collect()
    };
    let throughput = series(|v| v.0);
    let p99 = series(|v| v.1);
    let threads: Vec<usize> = {
        let mut t: Vec<usize> = by_name.values().flat_map(|p| p.keys().copied()).collect();
        t.sort_unstable();
        t.dedup();
        t
    };

    let height = TOP + 2.0 * PANEL_H + GAP + 50.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(title)
    );
    panel(&mut out, TOP, "operations/s", &threads, &throughput);
    panel(
        &mut out,
        TOP + PANEL_H + GAP,
        "p99 latency (ms)",
        &threads,
        &p99,
    );
    // Legend, right of the panels.
    for (i, s) in order.iter().enumerate() {
        let y = TOP + 10.0 + 18.0 * i as f64;
        let x = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            out,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            COLORS[i % COLORS.len()],
            x + 30.0,
            y + 4.0,
            escape(s)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One panel at `top`: axes, grid, ticks and a polyline per series; x is
/// log2 of the thread count, y linear from 0.
fn panel(out: &mut String, top: f64, label: &str, threads: &[usize], series: &[Series]) {
    let (x0, x1) = (LEFT, WIDTH - RIGHT);
    let (y0, y1) = (top + PANEL_H, top);
    let lo = threads.first().copied().unwrap_or(1).max(1) as f64;
    let hi = threads.last().copied().unwrap_or(1).max(1) as f64;
    let x_of = |t: usize| {
        if hi > lo {
            x0 + ((t.max(1) as f64).log2() - lo.log2()) / (hi.log2() - lo.log2()) * (x1 - x0)
        } else {
            (x0 + x1) / 2.0
        }
    };
    let max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let (step, top_value) = nice_scale(max);
    let y_of = |v: f64| y0 - v / top_value * (y0 - y1);

    let _ = writeln!(
        out,
        r#"<rect x="{x0}" y="{y1}" width="{}" height="{PANEL_H}" fill="none" stroke="black"/>"#,
        x1 - x0
    );
    let mut v = 0.0;
    while v <= top_value * 1.0001 {
        let y = y_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            short(v)
        );
        v += step;
    }
    for &t in threads {
        let x = x_of(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{y1}" x2="{x:.1}" y2="{y0}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{t}</text>"##,
            y0 + 16.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">threads (concurrent requests)</text><text x="18" y="{}" transform="rotate(-90 18 {})" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        y0 + 34.0,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(label)
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x_of(t), y_of(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
        }
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving about five ticks,
/// and the axis top (a multiple of the step at or above `max`).
fn nice_scale(max: f64) -> (f64, f64) {
    if max.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return (1.0, 1.0);
    }
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    (step, (max / step).ceil() * step)
}

/// A tick label: 12000 -> "12k", 0.25 -> "0.25".
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(nice_scale(0.0), (1.0, 1.0));
        assert_eq!(nice_scale(9300.0), (2000.0, 10000.0));
        assert_eq!(nice_scale(0.42), (0.1, 0.5));
    }

    #[test]
    fn one_polyline_per_series_and_panel() {
        let line = |peer: &str, threads: usize, ops: f64| {
            serde_json::from_value::<Record>(serde_json::json!({
                "peer": peer, "module": "m", "library": "l", "op": "sign-sm2",
                "status": "ok", "threads": threads, "duration_s": 1.0, "warmup_s": 0.1,
                "bytes_per_op": 32, "bulk": false, "calls_per_op": 3, "ops": 1,
                "errors": 0, "ops_per_s": ops, "mb_per_s": 0.0, "mbit_per_s": 0.0,
                "latency_us": {"p50": 100.0, "p99": 900.0, "max": 1000.0, "mean": 120.0}
            }))
            .unwrap()
        };
        let records = [
            line("a<b", 1, 100.0),
            line("a<b", 16, 900.0),
            line("c", 1, 50.0),
            line("c", 16, 400.0),
        ];
        let svg = plot(&records, "t & u");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a&lt;b sign-sm2"));
        assert!(svg.contains("t &amp; u"));
    }
}
