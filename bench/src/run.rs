//! `run`: one module, or two with `--compare`, set up once (load,
//! C_Initialize, login, sessions) and measured with the same workload:
//! every (operation, size, thread count) `--runs` times, the peers taking
//! turns run by run so that drift of the machine hits both alike.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::counter::Counter;
use crate::ops::{NotRun, OpName, Prepared, Sizes};
use crate::peer::{Peer, count_round_trips, open_peer, pin_to, specs};
use crate::report::{self, OpFacts, Record};
use crate::runner::{self, Measurement};
use crate::{BenchError, RunArgs, seconds};

pub fn run(args: &RunArgs) -> Result<(), BenchError> {
    let warmup = seconds(args.warmup, "warmup")?;
    let duration = seconds(args.duration, "duration")?;
    if args.threads.contains(&0) {
        return Err(BenchError::Usage("--threads: 0 threads".into()));
    }
    if args.runs == 0 {
        return Err(BenchError::Usage("--runs: 0 runs".into()));
    }
    let max_threads = args.threads.iter().copied().max().unwrap_or(1);
    let max_sessions = max_threads.max(args.sessions.unwrap_or(0));
    let mut op_list: Vec<OpName> = Vec::new();
    for op in &args.op {
        match op {
            OpName::All => op_list.extend(OpName::EVERY),
            op => op_list.push(*op),
        }
    }
    if let Some(cpu) = args.pin {
        pin_to(cpu)?;
    }
    let mut peers = Vec::new();
    for spec in specs(args)? {
        peers.push(open_peer(spec, args, max_sessions)?);
    }
    if !args.json {
        for peer in &peers {
            let c = &peer.context;
            println!(
                "{} — {} — slot {}, {} run(s) of {:.1} s after {:.1} s warm-up{}",
                c.module,
                c.library,
                peer.slot.id(),
                args.runs,
                args.duration,
                args.warmup,
                c.client_rss_kib
                    .map(|k| format!(", module resident memory {k} KiB"))
                    .unwrap_or_default(),
            );
        }
    }
    let sizes: Vec<Option<usize>> = if args.size.is_empty() {
        vec![None]
    } else {
        args.size.iter().copied().map(Some).collect()
    };
    let steps = op_list
        .iter()
        .map(|op| if op.sized() { sizes.len() } else { 1 })
        .sum::<usize>()
        * args.threads.len()
        * args.runs
        * peers.len();
    let bar = if args.no_progress {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(steps as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed} of ~{duration}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));

    let mut all: Vec<Record> = Vec::new();
    let mut emit = |record: Record| -> Result<(), BenchError> {
        let line = if args.json {
            serde_json::to_string(&record).map_err(|source| BenchError::Json {
                file: "<stdout>".into(),
                line: 0,
                source,
            })?
        } else {
            record.text()
        };
        bar.suspend(|| println!("{line}"));
        all.push(record);
        Ok(())
    };

    for op in op_list {
        let op_sizes = if op.sized() { &sizes[..] } else { &[None][..] };
        for &size in op_sizes {
            let sizes = Sizes {
                size,
                chunk: args.chunk,
                single_part: args.single_part,
            };
            let prepared: Vec<Result<Prepared, NotRun>> =
                peers.iter().map(|peer| peer.prepare(op, sizes)).collect();
            let mut rts = Vec::new();
            for (peer, p) in peers.iter().zip(&prepared) {
                rts.push(match p {
                    Ok(p) => count_round_trips(peer, p, args.count_ops),
                    Err(_) => None,
                });
            }
            for &threads in &args.threads {
                let sessions = threads.max(args.sessions.unwrap_or(threads));
                let mut runs: Vec<Vec<Measurement>> = peers.iter().map(|_| Vec::new()).collect();
                for r in 0..args.runs {
                    for (i, peer) in peers.iter_mut().enumerate() {
                        bar.set_message(format!(
                            "{} {} {threads} thr, run {}/{}",
                            peer.context.peer,
                            op.name(),
                            r + 1,
                            args.runs
                        ));
                        if let Ok(p) = &prepared[i] {
                            runs[i].push(runner::measure(
                                p,
                                &mut peer.sessions[..sessions],
                                threads,
                                warmup,
                                duration,
                            ));
                        }
                        bar.inc(1);
                    }
                }
                let mut rates = Vec::new();
                for (i, peer) in peers.iter().enumerate() {
                    let record = record_of(
                        peer,
                        op,
                        sizes,
                        &prepared[i],
                        rts[i],
                        (threads, sessions),
                        &runs[i],
                    );
                    rates.push(
                        (record.status == "ok")
                            .then_some((record.ops_per_s, record.latency_us.p99)),
                    );
                    emit(record)?;
                }
                if let ([Some((ops_a, p99_a)), Some((ops_b, p99_b))], false) =
                    (rates.as_slice(), args.json)
                {
                    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
                    bar.suspend(|| {
                        println!(
                            "{:>22} {} / {}: ops/s {:.2}x, p99 {:.2}x",
                            "",
                            peers[0].context.peer,
                            peers[1].context.peer,
                            ratio(*ops_a, *ops_b),
                            ratio(*p99_a, *p99_b)
                        )
                    });
                }
            }
            for (peer, p) in peers.iter().zip(&prepared) {
                if let Ok(p) = p {
                    p.cleanup(&peer.setup);
                }
            }
        }
    }
    bar.finish_and_clear();

    if peers.len() == 2 && !args.json {
        println!();
        print!(
            "{}",
            report::table(&all, Some(peers[0].context.peer.as_str()))
        );
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "hsmlink-bench: {}",
            peers
                .iter()
                .map(|p| p.context.peer.as_str())
                .collect::<Vec<_>>()
                .join(" vs ")
        );
        std::fs::write(path, crate::svg::plot(&all, &title))?;
    }
    for peer in peers {
        peer.close()?;
    }
    Ok(())
}

/// The record of one peer for one (operation, size, threads): the median of
/// its runs, or why it did not run.
fn record_of(
    peer: &Peer,
    op: OpName,
    sizes: Sizes,
    prepared: &Result<Prepared, NotRun>,
    round_trips: Option<f64>,
    (threads, sessions): (usize, usize),
    runs: &[Measurement],
) -> Record {
    match prepared {
        Ok(p) => {
            let source = peer
                .counter
                .as_ref()
                .filter(|_| round_trips.is_some())
                .map(Counter::source);
            let facts = OpFacts {
                op: op.name(),
                bulk: op.bulk(),
                bytes_per_op: p.bytes_per_op(),
                chunk: p.chunk(),
                calls_per_op: p.calls_per_op(),
                round_trips_per_op: round_trips,
                round_trips_source: source.as_deref(),
            };
            Record::measured(&peer.context, facts, threads, sessions, runs)
        }
        Err(not_run) => {
            let (status, detail) = match not_run {
                NotRun::Unsupported(d) => ("unsupported", d.clone()),
                NotRun::Failed(d) => ("failed", d.clone()),
            };
            let (bytes_per_op, chunk) = op.sizes(sizes);
            let facts = OpFacts {
                op: op.name(),
                bulk: op.bulk(),
                bytes_per_op,
                chunk: (op.bulk() && !sizes.single_part).then_some(chunk),
                calls_per_op: 0,
                round_trips_per_op: None,
                round_trips_source: None,
            };
            Record::not_run(&peer.context, facts, threads, status, detail)
        }
    }
}
