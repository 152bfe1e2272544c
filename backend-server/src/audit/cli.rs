//! `hsmlink-server audit verify|export`.

use std::io::Write;
use std::path::PathBuf;

use super::key::AuditKey;
use super::reader::{self, Filter};
use super::record::{hex, parse_time};
use crate::config::Config;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chains and check the signed chain heads; name
    /// the first bad record of each chain. Exits 1 if anything is wrong.
    Verify {
        /// Path of server.toml.
        #[arg(long)]
        config: PathBuf,
        /// Only this tenant's chain (`@provider` for admin actions on no tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// The report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print audit records as JSON lines.
    Export {
        /// Path of server.toml.
        #[arg(long)]
        config: PathBuf,
        /// Only this tenant's chain.
        #[arg(long)]
        tenant: Option<String>,
        /// Records from this time (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix ms).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time.
        #[arg(long)]
        until: Option<String>,
        /// Only records about this key (object handle).
        #[arg(long)]
        key: Option<u64>,
    },
}

/// Runs an `audit` subcommand.
pub fn run(command: &AuditCommand) -> Result<(), String> {
    match command {
        AuditCommand::Verify {
            config,
            tenant,
            json,
        } => verify(config, tenant.as_deref(), *json),
        AuditCommand::Export {
            config,
            tenant,
            since,
            until,
            key,
        } => {
            let config = Config::load(config).map_err(|e| e.to_string())?;
            let filter = Filter {
                chain: tenant.clone(),
                since_ms: since.as_deref().map(parse_time).transpose()?,
                until_ms: until.as_deref().map(parse_time).transpose()?,
                key: *key,
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            reader::export(&config.store.path, &filter, &mut out)?;
            out.flush().map_err(|e| format!("export: {e}"))
        }
    }
}

fn verify(config: &std::path::Path, tenant: Option<&str>, json: bool) -> Result<(), String> {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    let settings = config.audit_settings();
    let public = match AuditKey::load(&settings.key_file) {
        Ok(key) => Some(key.public()),
        Err(e) => {
            eprintln!(
                "hsmlink-server: warning: {e}; checking signatures with the key the store names"
            );
            None
        }
    };
    let report = reader::verify(&config.store.path, public, tenant)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    } else {
        if let Some(key) = &report.public_key {
            println!("audit key {key}");
        }
        if report.chains.is_empty() {
            println!(
                "no audit records{}",
                tenant.map(|t| format!(" for {t}")).unwrap_or_default()
            );
        }
        for c in &report.chains {
            let status = if c.problems.is_empty() {
                "OK"
            } else {
                "BROKEN"
            };
            println!(
                "chain {}: {status}: {} records ({}..{}), {} signed heads, signed through record {}",
                c.chain, c.records, c.first_seq, c.last_seq, c.heads, c.signed_through
            );
            if c.problems.is_empty() && c.signed_through < c.last_seq {
                println!(
                    "  records {}..{} are chained but not yet under a signed head",
                    c.signed_through + 1,
                    c.last_seq
                );
            }
            for p in &c.problems {
                println!("  {p}");
            }
        }
    }
    if report.ok() {
        Ok(())
    } else {
        let first = report
            .problems()
            .next()
            .map(ToString::to_string)
            .unwrap_or_default();
        Err(format!(
            "the audit log does not verify ({} problems; first: {first})",
            report.problems().count()
        ))
    }
}

/// The hex public key of the audit key file named by `config`.
pub fn public_key_hex(config: &Config) -> Result<String, String> {
    Ok(hex(
        &AuditKey::load(&config.audit_settings().key_file)?.public()
    ))
}
