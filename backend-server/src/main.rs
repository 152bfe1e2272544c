//! `hsmlink-server init` and `hsmlink-server run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hsmlink_server::config::{Config, DEFAULT_LISTEN, ListenAddr};
use hsmlink_server::init::{self, InitOptions};
use hsmlink_server::logging;
use hsmlink_server::names::TenantName;
use hsmlink_server::server::ServerError;

/// Every heap block is wiped when freed: no key or PIN outlives the buffer
/// that carried it (tests/tests/zeroisation.rs searches the process).
#[global_allocator]
static ALLOCATOR: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

#[derive(Debug, Parser)]
#[command(
    name = "hsmlink-server",
    version,
    about = "hsmlink: PKCS#11 over mutual TLS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a deployment directory: tenant CA, server and tenant
    /// certificates, server.toml and the module's client.toml.
    Init {
        /// Directory to write (created if missing; nothing in it is overwritten).
        #[arg(long)]
        dir: PathBuf,
        /// Address the server will listen on, HOST:PORT.
        #[arg(long, default_value = DEFAULT_LISTEN, value_parser = ListenAddr::parse)]
        listen: ListenAddr,
        /// Name of the first tenant ([a-z0-9][a-z0-9_-]{0,62}).
        #[arg(long, default_value = "demo", value_parser = parse_tenant)]
        tenant: TenantName,
        /// Directory of the store (default: --dir); for the packaged systemd
        /// service: /var/lib/hsmlink.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Leave the root key out of server.toml: the server reads the systemd
        /// credential hsmlink-root-key (LoadCredential= from DIR/root.key).
        #[arg(long)]
        root_key_credential: bool,
        /// Address of the admin API, HOST:PORT (default: 127.0.0.1 and the
        /// port after --listen's).
        #[arg(long, value_parser = ListenAddr::parse)]
        admin_listen: Option<ListenAddr>,
    },
    /// Serve tenants until SIGTERM or SIGINT.
    Run {
        /// Path of server.toml.
        #[arg(long)]
        config: PathBuf,
    },
    /// The audit log: verify its chains and signatures, export records.
    #[command(subcommand)]
    Audit(hsmlink_server::audit::cli::AuditCommand),
    /// Metering per tenant, hour, operation and mechanism.
    Metering(hsmlink_server::metering::MeteringArgs),
    /// The provider's administration API: tenants, certificates, partitions.
    Admin(hsmlink_server::admin::client::AdminArgs),
    /// A tenant's compliance report, fetched with its own certificate.
    Report(hsmlink_server::admin::client::Connection),
    /// Write an encrypted backup of the store (the key ring is not in it).
    Backup {
        /// Path of server.toml.
        #[arg(long)]
        config: PathBuf,
        /// The backup file to write (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Restore a backup into a fresh store (the server stopped).
    Restore {
        /// Path of server.toml.
        #[arg(long)]
        config: PathBuf,
        /// The backup file.
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Write the integrity value of this executable, which `run` checks at
    /// start (the software integrity self-test).
    Integrity {
        /// Write it (to --file, or next to the executable as .hmac).
        #[arg(long, required = true)]
        write: bool,
        /// Where to write it.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

fn parse_tenant(name: &str) -> Result<TenantName, String> {
    TenantName::parse(name).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: clap prints them and exits 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("hsmlink-server: {}", one_line(&e.render().to_string()));
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Init {
            dir,
            listen,
            tenant,
            state_dir,
            root_key_credential,
            admin_listen,
        } => run_init(InitOptions {
            dir,
            listen,
            tenant,
            state_dir,
            root_key_credential,
            admin_listen,
        }),
        Command::Run { config } => run_server(&config),
        Command::Audit(command) => hsmlink_server::audit::cli::run(&command),
        Command::Metering(args) => hsmlink_server::metering::run(&args),
        Command::Admin(args) => hsmlink_server::admin::client::run_admin(&args),
        Command::Report(connection) => hsmlink_server::admin::client::run_report(&connection),
        Command::Backup { config, out } => run_backup(&config, &out),
        Command::Restore { config, input } => run_restore(&config, &input),
        Command::Integrity { write: _, file } => run_integrity_write(file.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hsmlink-server: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// clap's usage error on one line, without the usage and help hints.
fn one_line(rendered: &str) -> String {
    rendered
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more information")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_init(options: InitOptions) -> Result<(), String> {
    let report = init::init(&options).map_err(|e| e.to_string())?;
    println!("hsmlink-server: wrote {}:", report.dir.display());
    for file in &report.files {
        println!("  {}", file.display());
    }
    println!(
        "Start the server:  hsmlink-server run --config {}",
        report.server_config.display()
    );
    println!(
        "Point the module:  HSMLINK_CONF={}",
        report.client_config.display()
    );
    Ok(())
}

fn run_server(path: &std::path::Path) -> Result<(), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    logging::init(&config.server.log_level)?;
    // Before any cryptography runs (tests of the error path only).
    hsmlink_server::soft::selftests::apply_break_switch()?;
    hsmlink_server::soft::integrity::check_at_start(&config.soft);
    hsmlink_server::admin::run_until_signalled(&config).map_err(|e| match e {
        // These name a key of the configuration: say which file.
        ServerError::Tls(_) | ServerError::Bind { .. } | ServerError::State(_) => {
            format!("{}: {e}", path.display())
        }
        ServerError::Io(_) => e.to_string(),
    })
}

fn run_integrity_write(file: Option<&std::path::Path>) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate the executable: {e}"))?;
    let written = hsmlink_server::soft::integrity::write(&exe, file)?;
    println!(
        "hsmlink-server: wrote the integrity value of {} to {}",
        exe.display(),
        written.display()
    );
    Ok(())
}

fn run_backup(config: &std::path::Path, out: &std::path::Path) -> Result<(), String> {
    let loaded = Config::load(config).map_err(|e| e.to_string())?;
    let report = hsmlink_server::admin::backup::backup(&loaded, out)?;
    println!(
        "hsmlink-server: wrote {} ({} bytes, {} partitions; encrypted under the root key)",
        report.file.display(),
        report.bytes,
        report.partitions
    );
    println!(
        "The key ring {} is not in the backup: keep it apart, like the root key.",
        hsmlink_server::admin::backup::keyring_of(&loaded).display()
    );
    Ok(())
}

fn run_restore(config: &std::path::Path, input: &std::path::Path) -> Result<(), String> {
    let loaded = Config::load(config).map_err(|e| e.to_string())?;
    let report = hsmlink_server::admin::backup::restore(&loaded, input)?;
    println!(
        "hsmlink-server: restored {} ({} partitions)",
        report.file.display(),
        report.partitions
    );
    for partition in &report.erased {
        println!(
            "partition {partition}: no key-encryption key in {} (terminated): its keys cannot be decrypted",
            hsmlink_server::admin::backup::keyring_of(&loaded).display()
        );
    }
    Ok(())
}
