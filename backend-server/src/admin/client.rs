//! `hsmlink-server admin ...` and `hsmlink-server report`: a small blocking
//! HTTPS client of the admin API (rustls over TCP, HTTP/1.1 written by
//! hand, one request per connection), readable tables or `--json`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};

/// Where the admin API is and who calls it.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// https://HOST:PORT of the admin listener ([admin] listen).
    #[arg(long)]
    pub url: String,
    /// CA certificate that signed the server's certificate (the tenant CA of init: ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// Client certificate (admin.pem for the provider; the tenant's own for `report`).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Print the API's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Tenants: list, create, show, disable, enable.
    #[command(subcommand)]
    Tenants(TenantCommand),
    /// Tenant certificates: list, issue, revoke.
    #[command(subcommand)]
    Certs(CertCommand),
    /// Partitions: list, allocate, show, suspend, resume, terminate.
    #[command(subcommand)]
    Partitions(PartitionCommand),
    /// The audit log: query, verify.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Metering per tenant, hour, operation and mechanism.
    Metering {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Is the server up.
    Health,
    /// The Prometheus metrics, as text.
    Metrics,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TenantCommand {
    List,
    Create { name: String },
    Show { name: String },
    Disable { name: String },
    Enable { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum CertCommand {
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Issues a client certificate for TENANT: from --csr (the key stays
    /// with the tenant), or with a new key written to --out-key.
    Issue {
        tenant: String,
        /// PKCS#10 request (PEM).
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Where to write the certificate (default: print it).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Where to write a generated key (required without --csr).
        #[arg(long)]
        out_key: Option<PathBuf>,
        /// Validity in days (default 365).
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revokes a certificate by serial (hex) or SHA-256 fingerprint (hex).
    Revoke { id: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum PartitionCommand {
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Allocates a clean partition for TENANT.
    Allocate {
        tenant: String,
        /// soft (default) or pkcs11.
        #[arg(long)]
        driver: Option<String>,
        /// The tenant's slot id (default: after its highest).
        #[arg(long)]
        slot: Option<u64>,
        /// soft driver: international (default) or gmt.
        #[arg(long)]
        algorithms: Option<String>,
        /// pkcs11 driver: the [[devices]] name.
        #[arg(long)]
        device: Option<String>,
        /// pkcs11 driver: how many devices (on different HSMs) hold the
        /// partition; the server chooses those --device does not name.
        #[arg(long)]
        replica_count: Option<u32>,
        /// Partition name (default TENANT-pSLOT).
        #[arg(long)]
        name: Option<String>,
    },
    Show {
        name: String,
    },
    Suspend {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Erases every key of the partition, for good.
    Terminate {
        name: String,
        /// Required: termination cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Records, as JSON lines.
    Query {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Recomputes the chains and checks the signed heads.
    Verify {
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// One request to the admin API.
pub fn request(
    connection: &Connection,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, String> {
    let rest = connection
        .url
        .strip_prefix("https://")
        .ok_or_else(|| format!("--url {}: must start with https://", connection.url))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let config = client_config(connection)?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| format!("--url: bad host {host:?}: {e}"))?;
    let tcp = TcpStream::connect(authority).map_err(|e| format!("{authority}: {e}"))?;
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(60)));
    let tls = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .and_then(|()| stream.flush())
        .map_err(|e| format!("{authority}: {e}"))?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server closed without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(format!("{authority}: {e}")),
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Answer, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("malformed HTTP status line")?;
    let mut body = raw[split + 4..].to_vec();
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Answer { status, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".to_owned());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn client_config(c: &Connection) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&c.ca).map_err(|e| format!("--ca: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("--ca: {e}"))?)
            .map_err(|e| format!("--ca: {e}"))?;
    }
    let chain = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| format!("--cert: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--cert: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| format!("--key: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("--cert/--key: {e}"))?;
    Ok(Arc::new(config))
}

/// `hsmlink-server admin ...`.
pub fn run_admin(args: &AdminArgs) -> Result<(), String> {
    let c = &args.connection;
    let call = |method: &str, path: &str, body: Option<Value>| -> Result<Value, String> {
        let answer = request(c, method, path, body.as_ref())?;
        let value = answer.json();
        if (200..300).contains(&answer.status) {
            Ok(value)
        } else {
            Err(format!(
                "{} {}",
                answer.status,
                value["error"].as_str().unwrap_or("request failed")
            ))
        }
    };
    let q = |name: &str, value: &Option<String>| {
        value
            .as_ref()
            .map_or_else(String::new, |v| format!("?{name}={v}"))
    };
    match &args.command {
        AdminCommand::Health => show(c, &call("GET", "/v1/health", None)?, Table::KeyValue),
        AdminCommand::Metrics => {
            let answer = request(c, "GET", "/metrics", None)?;
            print!("{}", String::from_utf8_lossy(&answer.body));
            Ok(())
        }
        AdminCommand::Metering { tenant } => show(
            c,
            &call("GET", &format!("/v1/metering{}", q("tenant", tenant)), None)?,
            Table::List(
                "metering",
                &["hour", "tenant", "operation", "mechanism", "count"],
            ),
        ),
        AdminCommand::Tenants(t) => match t {
            TenantCommand::List => show(
                c,
                &call("GET", "/v1/tenants", None)?,
                Table::List(
                    "tenants",
                    &["name", "disabled", "source", "created_at", "partitions"],
                ),
            ),
            TenantCommand::Create { name } => show(
                c,
                &call("POST", "/v1/tenants", Some(json!({ "name": name })))?,
                Table::KeyValue,
            ),
            TenantCommand::Show { name } => {
                let value = call("GET", &format!("/v1/tenants/{name}"), None)?;
                show(c, &value, Table::KeyValue)?;
                if !c.json {
                    println!();
                    show_list(
                        &value,
                        "partitions",
                        &["name", "slot", "driver", "state", "serial"],
                    );
                    println!();
                    show_list(
                        &value,
                        "certificates",
                        &["serial", "status", "not_after", "fingerprint"],
                    );
                }
                Ok(())
            }
            TenantCommand::Disable { name } => show(
                c,
                &call("POST", &format!("/v1/tenants/{name}/disable"), None)?,
                Table::KeyValue,
            ),
            TenantCommand::Enable { name } => show(
                c,
                &call("POST", &format!("/v1/tenants/{name}/enable"), None)?,
                Table::KeyValue,
            ),
        },
        AdminCommand::Certs(command) => match command {
            CertCommand::List { tenant } => show(
                c,
                &call(
                    "GET",
                    &format!("/v1/certificates{}", q("tenant", tenant)),
                    None,
                )?,
                Table::List(
                    "certificates",
                    &["serial", "tenant", "status", "not_after", "fingerprint"],
                ),
            ),
            CertCommand::Issue {
                tenant,
                csr,
                out,
                out_key,
                days,
            } => {
                if csr.is_none() && out_key.is_none() && !c.json {
                    return Err(
                        "without --csr the key is made by the server: give --out-key FILE"
                            .to_owned(),
                    );
                }
                let csr = csr
                    .as_ref()
                    .map(|p| {
                        std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))
                    })
                    .transpose()?;
                let value = call(
                    "POST",
                    &format!("/v1/tenants/{tenant}/certificates"),
                    Some(json!({ "csr": csr, "days": days })),
                )?;
                if let Some(path) = out {
                    write_file(path, value["certificate_pem"].as_str().unwrap_or(""), 0o644)?;
                }
                if let (Some(path), Some(key)) = (out_key, value["private_key_pem"].as_str()) {
                    write_file(path, key, 0o600)?;
                }
                if c.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    );
                } else {
                    let mut shown = value.clone();
                    if let Some(map) = shown.as_object_mut() {
                        map.remove("private_key_pem");
                        if out.is_some() {
                            map.remove("certificate_pem");
                        }
                    }
                    print_key_values(&shown);
                }
                Ok(())
            }
            CertCommand::Revoke { id } => show(
                c,
                &call("POST", &format!("/v1/certificates/{id}/revoke"), None)?,
                Table::KeyValue,
            ),
        },
        AdminCommand::Partitions(p) => match p {
            PartitionCommand::List { tenant } => show(
                c,
                &call(
                    "GET",
                    &format!("/v1/partitions{}", q("tenant", tenant)),
                    None,
                )?,
                Table::List(
                    "partitions",
                    &["name", "tenant", "slot", "driver", "state", "serial"],
                ),
            ),
            PartitionCommand::Allocate {
                tenant,
                driver,
                slot,
                algorithms,
                device,
                replica_count,
                name,
            } => show(
                c,
                &call(
                    "POST",
                    &format!("/v1/tenants/{tenant}/partitions"),
                    Some(json!({
                        "driver": driver, "slot": slot, "algorithms": algorithms,
                        "device": device, "replica_count": replica_count, "name": name,
                    })),
                )?,
                Table::KeyValue,
            ),
            PartitionCommand::Show { name } => show(
                c,
                &call("GET", &format!("/v1/partitions/{name}"), None)?,
                Table::KeyValue,
            ),
            PartitionCommand::Suspend { name } => show(
                c,
                &call("POST", &format!("/v1/partitions/{name}/suspend"), None)?,
                Table::KeyValue,
            ),
            PartitionCommand::Resume { name } => show(
                c,
                &call("POST", &format!("/v1/partitions/{name}/resume"), None)?,
                Table::KeyValue,
            ),
            PartitionCommand::Terminate { name, yes } => {
                if !yes {
                    return Err(format!(
                        "terminating {name} erases every key of it for good: add --yes"
                    ));
                }
                show(
                    c,
                    &call(
                        "POST",
                        &format!("/v1/partitions/{name}/terminate"),
                        Some(json!({ "confirm": name })),
                    )?,
                    Table::KeyValue,
                )
            }
        },
        AdminCommand::Audit(a) => match a {
            AuditCommand::Query { tenant, limit } => {
                let mut path = format!("/v1/audit?limit={}", limit.unwrap_or(1000));
                if let Some(t) = tenant {
                    path.push_str(&format!("&tenant={t}"));
                }
                let value = call("GET", &path, None)?;
                for record in value["records"].as_array().into_iter().flatten() {
                    println!("{record}");
                }
                Ok(())
            }
            AuditCommand::Verify { tenant } => {
                let value = call(
                    "GET",
                    &format!("/v1/audit/verify{}", q("tenant", tenant)),
                    None,
                )?;
                if c.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    );
                } else {
                    for chain in value["chains"].as_array().into_iter().flatten() {
                        let problems = chain["problems"].as_array().map_or(0, Vec::len);
                        println!(
                            "{:<24} {}",
                            chain["chain"].as_str().unwrap_or(""),
                            if problems == 0 {
                                "ok".to_owned()
                            } else {
                                format!("{problems} problem(s)")
                            }
                        );
                    }
                }
                if value["ok"].as_bool() == Some(true) {
                    Ok(())
                } else {
                    Err("the audit log does not verify".to_owned())
                }
            }
        },
    }
}

/// `hsmlink-server report`: the tenant's compliance report.
pub fn run_report(c: &Connection) -> Result<(), String> {
    let answer = request(c, "GET", "/v1/tenant/report", None)?;
    let value = answer.json();
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "{} {}",
            answer.status,
            value["error"].as_str().unwrap_or("request failed")
        ));
    }
    if c.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    println!("tenant:    {}", value["tenant"].as_str().unwrap_or(""));
    println!(
        "generated: {}",
        value["generated_at"].as_str().unwrap_or("")
    );
    println!("server:    {}", value["server"].as_str().unwrap_or(""));
    println!("audit:     {}", flat(&value["audit"]));
    for p in value["partitions"].as_array().into_iter().flatten() {
        println!();
        println!(
            "slot {} — partition {}",
            p["slot"],
            p["partition"].as_str().unwrap_or("")
        );
        for key in [
            "state",
            "driver",
            "token_serial",
            "device",
            "replica_placement",
            "master_key",
            "session_limits",
            "token",
        ] {
            println!("  {key:<18} {}", flat(&p[key]));
        }
    }
    Ok(())
}

/// How to print an answer.
enum Table<'a> {
    KeyValue,
    List(&'a str, &'a [&'a str]),
}

fn show(c: &Connection, value: &Value, table: Table<'_>) -> Result<(), String> {
    if c.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return Ok(());
    }
    match table {
        Table::KeyValue => print_key_values(value),
        Table::List(field, columns) => show_list(value, field, columns),
    }
    Ok(())
}

fn print_key_values(value: &Value) {
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            if v.is_array() && k != "partitions" || k == "certificates" {
                continue;
            }
            println!("{k:<20} {}", flat(v));
        }
    }
}

fn show_list(value: &Value, field: &str, columns: &[&str]) {
    let rows: Vec<Vec<String>> = value[field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| columns.iter().map(|c| flat(&row[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

fn flat(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(flat).collect::<Vec<_>>().join(","),
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}={}", flat(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let a = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (201, &b"{}"[..]));
        let a = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(a.body, b"abcde");
        assert!(parse_response(b"garbage").is_err());
    }
}
