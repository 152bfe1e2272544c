//! hsmlink-bench: loads any PKCS#11 module (hsmlink's, SoftHSMv2,
//! p11-kit's remote client, ...) through the `cryptoki` crate and measures
//! its operations, so that every comparison is one tool measuring several
//! modules.
//!
//! - `run`: one module (`--module`) or two (`--compare A B`), operations ×
//!   sizes × thread counts × sessions, `--runs` runs each (median
//!   reported); text or JSON lines; `--svg` plot; `--pin` to one CPU.
//! - `table`: a Markdown comparison table from the JSON lines of several
//!   `run --json`, with the ratio of a baseline peer to every other peer.
//! - `plot`: the SVG plot (throughput and p99 against threads) from JSON lines.
//! - `ops`: the operations and what one iteration of each is.

mod counter;
mod memory;
mod ops;
mod peer;
mod report;
mod run;
mod runner;
mod svg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cryptoki::error::Error as CkError;

use ops::{OpName, ck_error};
use report::Record;

#[derive(Debug, Parser)]
#[command(name = "hsmlink-bench", version, about = "Measure PKCS#11 modules")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure operations of one PKCS#11 module, or compare two.
    Run(Box<RunArgs>),
    /// Print a Markdown comparison table from `run --json` output files.
    Table(TableArgs),
    /// Write an SVG plot of ops/s and p99 against threads from `run --json` files.
    Plot(PlotArgs),
    /// List the operations and what one iteration of each does.
    Ops,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The PKCS#11 module (.so) to load.
    #[arg(long, required_unless_present = "compare", conflicts_with = "compare")]
    module: Option<PathBuf>,
    /// Two modules, each `[NAME=]PATH`, measured with the same workload in
    /// one run (taking turns run by run); prints the ratios A / B.
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Vec<String>,
    /// Slot id to use (default: the first slot with an initialised token).
    #[arg(long, conflicts_with = "token_label")]
    slot: Option<u64>,
    /// Label of the token to use (every peer).
    #[arg(long)]
    token_label: Option<String>,
    /// User PIN; the tool logs in once per module (login is per application).
    #[arg(long)]
    user_pin: String,
    /// User PIN of `--compare`'s B, if not the same.
    #[arg(long)]
    user_pin_b: Option<String>,
    /// Operations, comma-separated, or `all` (see `hsmlink-bench ops`).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    op: Vec<OpName>,
    /// Thread counts (concurrent requests), comma-separated, 1 to 256 or more.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Sessions shared out over the threads (each uses its own in turn);
    /// default and minimum: one per thread.
    #[arg(long)]
    sessions: Option<usize>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up before each run (not counted).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Runs per (operation, size, threads); the median run (by ops/s) is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Bytes per operation (message, data to digest or encrypt, random),
    /// comma-separated for several; default per operation (`hsmlink-bench ops`).
    #[arg(long, value_delimiter = ',')]
    size: Vec<usize>,
    /// Bytes per C_*Update call of bulk operations.
    #[arg(long, default_value_t = 64 * 1024)]
    chunk: usize,
    /// Bulk operations in one single-part call (C_Digest, C_Encrypt, C_Sign)
    /// instead of init/update/final.
    #[arg(long)]
    single_part: bool,
    /// Name of the peer in the report (default: the module's file name).
    #[arg(long, conflicts_with = "compare")]
    peer: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Pin this process and all its threads (the module's too) to one CPU
    /// (default 0), e.g. with the server under `taskset -c 0`: client and
    /// server then share one core.
    #[arg(long, num_args = 0..=1, default_missing_value = "0", value_name = "CPU")]
    pin: Option<usize>,
    /// Shell command printing a request counter of the (first) module's
    /// server, read before and after `--count-ops` single-threaded
    /// operations to count round trips per operation; for hsmlink:
    /// `hsmlink-server admin --url .. --ca .. --cert admin.pem --key admin-key.pem metrics`.
    #[arg(long)]
    count_cmd: Option<String>,
    /// `--count-cmd` of `--compare`'s B.
    #[arg(long)]
    count_cmd_b: Option<String>,
    /// The metric `--count-cmd` prints (Prometheus text; every label set
    /// summed), unless it prints one number.
    #[arg(long, default_value = "hsmlink_requests_total")]
    count_metric: String,
    /// Operations between the two counter readings.
    #[arg(long, default_value_t = 20)]
    count_ops: u64,
    /// The server's process id: its resident memory growth per session
    /// opened is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// `--server-pid` of `--compare`'s B.
    #[arg(long)]
    server_pid_b: Option<u32>,
    /// Write an SVG plot (ops/s and p99 against threads) of this run here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// No progress bar (it shows on a terminal's stderr only anyway).
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Args)]
struct TableArgs {
    /// Files of JSON lines written by `run --json` ("-" for standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The peer every other is compared with (default: the first one seen).
    #[arg(long)]
    baseline: Option<String>,
}

#[derive(Debug, Args)]
struct PlotArgs {
    /// Files of JSON lines written by `run --json` ("-" for standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only these operations (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    op: Vec<String>,
    /// Where to write the SVG.
    #[arg(long)]
    out: PathBuf,
    /// Title on top of the plot.
    #[arg(long, default_value = "hsmlink-bench")]
    title: String,
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {}", ck_error(.source))]
    Pkcs11 {
        what: String,
        #[source]
        source: CkError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{file}:{line}: {source}")]
    Json {
        file: String,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

pub fn ck(what: &str) -> impl FnOnce(CkError) -> BenchError + '_ {
    move |source| BenchError::Pkcs11 {
        what: what.to_string(),
        source,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Table(args) => table(&args),
        Command::Plot(args) => plot(&args),
        Command::Ops => {
            for op in OpName::EVERY {
                println!("{:<18} {}", op.name(), op.describe());
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsmlink-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn seconds(value: f64, name: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| BenchError::Usage(format!("--{name} {value}: not a duration in seconds")))
}

/// The records of JSON-lines files (other lines skipped).
fn read_records(files: &[PathBuf]) -> Result<Vec<Record>, BenchError> {
    let mut records = Vec::new();
    for file in files {
        let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            Box::new(BufReader::new(std::fs::File::open(file)?))
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            if !line.trim_start().starts_with('{') {
                continue;
            }
            let record: Record =
                serde_json::from_str(&line).map_err(|source| BenchError::Json {
                    file: file.display().to_string(),
                    line: n + 1,
                    source,
                })?;
            records.push(record);
        }
    }
    Ok(records)
}

fn table(args: &TableArgs) -> Result<(), BenchError> {
    let records = read_records(&args.files)?;
    print!("{}", report::table(&records, args.baseline.as_deref()));
    Ok(())
}

fn plot(args: &PlotArgs) -> Result<(), BenchError> {
    let mut records = read_records(&args.files)?;
    if !args.op.is_empty() {
        records.retain(|r| args.op.contains(&r.op));
    }
    write_file(&args.out, &svg::plot(&records, &args.title))
}

fn write_file(path: &Path, text: &str) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(BenchError::Io)
}
