//! hsmlink-bench: loads any PKCS#11 module (hsmlink's, SoftHSMv2,
//! p11-kit's remote client, ...) through the `cryptoki` crate and measures
//! its operations, so that every comparison is one tool measuring several
//! modules.
//!
//! - `run`: one module, one or more operations and thread counts; text or
//!   JSON lines.
//! - `table`: a Markdown comparison table from the JSON lines of several
//!   `run --json`, with the ratio of a baseline peer to every other peer.
//! - `ops`: the operations and what one iteration of each is.

mod ops;
mod report;
mod runner;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use ops::{NotRun, OpName, Sizes, ck_error};
use report::{Context, OpFacts, Record};

#[derive(Debug, Parser)]
#[command(name = "hsmlink-bench", version, about = "Measure PKCS#11 modules")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure operations of one PKCS#11 module.
    Run(RunArgs),
    /// Print a Markdown comparison table from `run --json` output files.
    Table(TableArgs),
    /// List the operations and what one iteration of each does.
    Ops,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The PKCS#11 module (.so) to load.
    #[arg(long)]
    module: PathBuf,
    /// Slot id to use (default: the first slot with an initialised token).
    #[arg(long, conflicts_with = "token_label")]
    slot: Option<u64>,
    /// Label of the token to use.
    #[arg(long)]
    token_label: Option<String>,
    /// User PIN; the tool logs in once (login is per application).
    #[arg(long)]
    pin: String,
    /// Operations, comma-separated, or `all` (see `hsmlink-bench ops`).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    op: Vec<OpName>,
    /// Thread counts, comma-separated; one session per thread.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Measured seconds per (operation, thread count).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up before measuring (not counted).
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Bytes per operation (message, data to digest or encrypt, random);
    /// default per operation (see `hsmlink-bench ops`).
    #[arg(long)]
    size: Option<usize>,
    /// Bytes per C_*Update call of bulk operations.
    #[arg(long, default_value_t = 64 * 1024)]
    chunk: usize,
    /// Bulk operations in one single-part call (C_Digest, C_Encrypt, C_Sign)
    /// instead of init/update/final.
    #[arg(long)]
    single_part: bool,
    /// Name of the peer in the report (default: the module's file name).
    #[arg(long)]
    peer: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
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

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
enum BenchError {
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

fn ck(what: &str) -> impl FnOnce(CkError) -> BenchError + '_ {
    move |source| BenchError::Pkcs11 {
        what: what.to_string(),
        source,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Table(args) => table(&args),
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

fn seconds(value: f64, name: &str) -> Result<Duration, BenchError> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| BenchError::Usage(format!("--{name} {value}: not a duration in seconds")))
}

/// The slot to measure: `--slot`, the token labelled `--token-label`, or the
/// first slot with an initialised token.
fn find_slot(pkcs11: &Pkcs11, args: &RunArgs) -> Result<Slot, BenchError> {
    let slots = pkcs11.get_slots_with_token().map_err(ck("C_GetSlotList"))?;
    if let Some(id) = args.slot {
        return slots
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| BenchError::Usage(format!("no slot {id} with a token")));
    }
    for slot in slots {
        let info = pkcs11.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        let wanted = match &args.token_label {
            Some(label) => info.label().trim_end() == label,
            None => info.token_initialized(),
        };
        if wanted {
            return Ok(slot);
        }
    }
    Err(BenchError::Usage(match &args.token_label {
        Some(label) => format!("no token labelled {label:?}"),
        None => "no slot with an initialised token".into(),
    }))
}

fn run(args: &RunArgs) -> Result<(), BenchError> {
    let warmup = seconds(args.warmup, "warmup")?;
    let duration = seconds(args.duration, "duration")?;
    if args.threads.contains(&0) {
        return Err(BenchError::Usage("--threads: 0 threads".into()));
    }
    let max_threads = args.threads.iter().copied().max().unwrap_or(1);
    let mut op_list: Vec<OpName> = Vec::new();
    for op in &args.op {
        match op {
            OpName::All => op_list.extend(OpName::EVERY),
            op => op_list.push(*op),
        }
    }

    let pkcs11 = Pkcs11::new(&args.module).map_err(ck("loading the module"))?;
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(ck("C_Initialize"))?;
    let info = pkcs11.get_library_info().map_err(ck("C_GetInfo"))?;
    let library = format!(
        "{} {} ({})",
        info.library_description().trim_end(),
        info.library_version(),
        info.manufacturer_id().trim_end()
    );
    let slot = find_slot(&pkcs11, args)?;
    // cryptoki's list leaves out every mechanism it has no name for (all
    // vendor-defined ones), so what is not in it is asked for by number:
    // C_GetMechanismInfo answers CKR_MECHANISM_INVALID for what the token
    // does not support.
    let listed: HashSet<u64> = pkcs11
        .get_mechanism_list(slot)
        .map_err(ck("C_GetMechanismList"))?
        .into_iter()
        .map(|m| *m)
        .collect();
    let supported = |mechanism: u64| {
        listed.contains(&mechanism)
            || MechanismType::try_from(mechanism)
                .or_else(|_| MechanismType::new_vendor_defined(mechanism))
                .and_then(|m| pkcs11.get_mechanism_info(slot, m))
                .is_ok()
    };

    // The session that makes the keys (session objects) and keeps them
    // alive; logging in on it logs in every session of the application.
    let setup = pkcs11.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
    match setup.login(UserType::User, Some(&AuthPin::new(args.pin.clone().into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => return Err(ck("C_Login")(e)),
    }
    let mut sessions: Vec<Session> = Vec::with_capacity(max_threads);
    for _ in 0..max_threads {
        sessions.push(
            pkcs11
                .open_rw_session(slot)
                .map_err(ck("C_OpenSession (one per thread)"))?,
        );
    }

    let context = Context {
        peer: args.peer.clone().unwrap_or_else(|| {
            args.module
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        module: args.module.display().to_string(),
        library,
        warmup_s: args.warmup,
    };
    if !args.json {
        println!(
            "{} — {} — slot {}, {:.1} s per run after {:.1} s warm-up",
            context.module,
            context.library,
            slot.id(),
            args.duration,
            args.warmup
        );
    }
    let sizes = Sizes {
        size: args.size,
        chunk: args.chunk,
        single_part: args.single_part,
    };
    let emit = |record: &Record| -> Result<(), BenchError> {
        if args.json {
            let line = serde_json::to_string(record).map_err(|source| BenchError::Json {
                file: "<stdout>".into(),
                line: 0,
                source,
            })?;
            println!("{line}");
        } else {
            println!("{}", record.text());
        }
        Ok(())
    };

    for op in op_list {
        match ops::prepare(op, &setup, &supported, sizes) {
            Ok(prepared) => {
                let facts = OpFacts {
                    op: op.name(),
                    bulk: op.bulk(),
                    bytes_per_op: prepared.bytes_per_op(),
                    chunk: prepared.chunk(),
                    calls_per_op: prepared.calls_per_op(),
                };
                for &threads in &args.threads {
                    let measurement =
                        runner::measure(&prepared, &mut sessions[..threads], warmup, duration);
                    emit(&Record::measured(&context, facts, threads, &measurement))?;
                }
                prepared.cleanup(&setup);
            }
            Err(not_run) => {
                let (status, detail) = match not_run {
                    NotRun::Unsupported(detail) => ("unsupported", detail),
                    NotRun::Failed(detail) => ("failed", detail),
                };
                let (bytes_per_op, chunk) = op.sizes(sizes);
                let facts = OpFacts {
                    op: op.name(),
                    bulk: op.bulk(),
                    bytes_per_op,
                    chunk: (op.bulk() && !sizes.single_part).then_some(chunk),
                    calls_per_op: 0,
                };
                for &threads in &args.threads {
                    emit(&Record::not_run(
                        &context,
                        facts,
                        threads,
                        status,
                        detail.clone(),
                    ))?;
                }
            }
        }
    }

    drop(sessions);
    let _ = setup.logout();
    drop(setup);
    pkcs11.finalize().map_err(ck("C_Finalize"))?;
    Ok(())
}

fn table(args: &TableArgs) -> Result<(), BenchError> {
    let mut records = Vec::new();
    for file in &args.files {
        let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            Box::new(BufReader::new(std::fs::File::open(file)?))
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() || !line.trim_start().starts_with('{') {
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
    print!("{}", report::table(&records, args.baseline.as_deref()));
    Ok(())
}
