//! An SVG plot of throughput and p99 latency against concurrency (threads,
//! log2 axis), one line per (peer, operation, size), from the records of one
//! or more runs; both y axes log10.
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
        if r.bytes_per_op > 0 && (r.bulk || r.bytes_per_op != 32) {
            let _ = write!(name, " {}", crate::report::human_bytes(r.bytes_per_op));
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
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{}/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            COLORS[i % COLORS.len()],
            dash(i),
            x + 30.0,
            y + 4.0,
            escape(s)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One panel at `top`: axes, grid, ticks and a polyline per series; x is
/// log2 of the thread count, y log10.
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
    // y: log10, whole decades, so that 1M ops/s (a session opened) and
    // 500 ops/s (an SM2 signature) share one panel; values <= 0 are left out.
    let values = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|v| *v > 0.0)
    };
    let lo_dec = values().fold(f64::INFINITY, f64::min).log10().floor();
    let hi_dec = values().fold(0.0f64, f64::max).log10().ceil();
    let (lo_dec, hi_dec) = if lo_dec.is_finite() && hi_dec.is_finite() {
        (lo_dec, hi_dec.max(lo_dec + 1.0))
    } else {
        (0.0, 1.0)
    };
    let y_of = |v: f64| y0 - (v.log10() - lo_dec) / (hi_dec - lo_dec) * (y0 - y1);

    let _ = writeln!(
        out,
        r#"<rect x="{x0}" y="{y1}" width="{}" height="{PANEL_H}" fill="none" stroke="black"/>"#,
        x1 - x0
    );
    for decade in (lo_dec as i32)..=(hi_dec as i32) {
        let y = y_of(10f64.powi(decade));
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            decade_label(decade)
        );
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
        let dash = dash(i);
        let points: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|&(t, v)| format!("{:.1},{:.1}", x_of(t), y_of(v)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
        }
    }
}

/// Lines past the tenth reuse the colours, dashed.
fn dash(series: usize) -> &'static str {
    if series >= COLORS.len() {
        r#" stroke-dasharray="6 3""#
    } else {
        ""
    }
}

/// The label of the tick at 10^`decade`: 1M, 10k, 100, 0.01, ...
fn decade_label(decade: i32) -> String {
    match decade {
        d if d >= 6 => format!("{}M", 10u64.pow((d - 6).unsigned_abs())),
        d if d >= 3 => format!("{}k", 10u64.pow((d - 3).unsigned_abs())),
        d if d >= 0 => 10u64.pow(d.unsigned_abs()).to_string(),
        d => format!("0.{}1", "0".repeat((-d - 1).unsigned_abs() as usize)),
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
    fn tick_labels_are_short() {
        assert_eq!(decade_label(7), "10M");
        assert_eq!(decade_label(3), "1k");
        assert_eq!(decade_label(2), "100");
        assert_eq!(decade_label(0), "1");
        assert_eq!(decade_label(-2), "0.01");
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
