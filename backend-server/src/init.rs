//! `hsmlink-server init`: a ready-to-run deployment directory.
//!
//! Writes a tenant CA, a server certificate and one tenant's client
//! certificate (all ECDSA P-256, made with rcgen), a provider-admin CA and
//! an admin client certificate (for the admin API, `[admin]`), the software
//! HSM's root key (`root.key`, 32 random bytes as hex), `server.toml` and
//! the module's `client.toml`, with absolute paths. Key files are created with mode 0600. Nothing is overwritten: if any file it would write exists, init
//! writes nothing at all.
//!
//! The certificate functions are public so that tests (and, later, the admin
//! CLI) can issue tenant certificates with any validity period.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::config::ListenAddr;
use crate::names::{TENANT_URI_PREFIX, TenantName};
use crate::soft::keys::RootKey;

const CA_VALIDITY_DAYS: i64 = 3653;
const SERVER_VALIDITY_DAYS: i64 = 365;
const TENANT_VALIDITY_DAYS: i64 = 365;
const ADMIN_VALIDITY_DAYS: i64 = 365;

/// A provider admin's certificate names the admin with this SAN URI prefix
/// (informative: the admin CA is what grants the right).
pub const ADMIN_URI_PREFIX: &str = "hsmlink:admin:";
/// Certificates start to be valid a little in the past, for clock skew.
const BACKDATE: Duration = Duration::hours(1);

const KEY_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("refusing to overwrite {}; nothing was written", list(.0))]
    Exists(Vec<PathBuf>),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the path must be valid UTF-8 to go into the configuration files", .0.display())]
    NotUtf8(PathBuf),
    #[error("cannot make certificate: {0}")]
    Certificate(String),
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<rcgen::Error> for InitError {
    fn from(e: rcgen::Error) -> Self {
        Self::Certificate(e.to_string())
    }
}

/// A certificate and its private key, both PEM. The key is wiped on drop.
#[derive(Debug)]
pub struct CertifiedKey {
    pub cert_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
}

/// What `init` is asked to do.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub dir: PathBuf,
    pub listen: ListenAddr,
    pub tenant: TenantName,
    /// Where the store goes (default: `dir`), e.g. systemd's
    /// `StateDirectory` `/var/lib/hsmlink`.
    pub state_dir: Option<PathBuf>,
    /// server.toml names no root key file: the server reads the systemd
    /// credential `hsmlink-root-key` (`LoadCredential=` from `dir/root.key`).
    pub root_key_credential: bool,
    /// Where the admin API listens (default: [`default_admin_listen`]).
    pub admin_listen: Option<ListenAddr>,
}

/// The admin listener's default address: the loopback address, on the
/// port after the tenant port (127.0.0.1:7701 for 7700), so that the admin
/// API is not reachable from other machines unless asked for.
pub fn default_admin_listen(listen: &ListenAddr) -> ListenAddr {
    let port = match listen.port() {
        u16::MAX => u16::MAX - 1,
        0 => 0,
        p => p + 1,
    };
    let host = match listen.host().parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => "[::1]".to_owned(),
        Ok(_) => Ipv4Addr::LOCALHOST.to_string(),
        Err(_) if listen.host() == "localhost" => "localhost".to_owned(),
        Err(_) => Ipv4Addr::LOCALHOST.to_string(),
    };
    ListenAddr::parse(&format!("{host}:{port}")).unwrap_or_else(|_| listen.clone())
}

impl InitOptions {
    /// A deployment in `dir` alone: the store beside the configuration,
    /// the root key in a file server.toml names.
    pub fn new(dir: PathBuf, listen: ListenAddr, tenant: TenantName) -> Self {
        Self {
            dir,
            listen,
            tenant,
            state_dir: None,
            root_key_credential: false,
            admin_listen: None,
        }
    }
}

/// What `init` wrote.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// Absolute.
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub server_config: PathBuf,
    pub client_config: PathBuf,
}

/// The files of a deployment directory (contract: "Deployment directory").
#[derive(Clone, Debug)]
pub struct DeploymentFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub tenant_cert: PathBuf,
    pub tenant_key: PathBuf,
    pub server_config: PathBuf,
    pub client_config: PathBuf,
    pub root_key: PathBuf,
    pub store: PathBuf,
    /// server.toml leaves the root key to the systemd credential.
    pub root_key_credential: bool,
    /// The provider-admin CA and an admin's client certificate.
    pub admin_ca_cert: PathBuf,
    pub admin_ca_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
}

impl DeploymentFiles {
    pub fn new(dir: &Path, tenant: &TenantName) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            tenant_cert: dir.join(format!("{tenant}.pem")),
            tenant_key: dir.join(format!("{tenant}-key.pem")),
            server_config: dir.join("server.toml"),
            client_config: dir.join("client.toml"),
            root_key: dir.join("root.key"),
            store: dir.join("hsmlink.db"),
            root_key_credential: false,
            admin_ca_cert: dir.join("admin-ca.pem"),
            admin_ca_key: dir.join("admin-ca-key.pem"),
            admin_cert: dir.join("admin.pem"),
            admin_key: dir.join("admin-key.pem"),
        }
    }

    /// Everything init writes (the store is created later, by the server).
    fn written(&self) -> [&Path; 13] {
        [
            &self.admin_ca_cert,
            &self.admin_ca_key,
            &self.admin_cert,
            &self.admin_key,
            &self.root_key,
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.tenant_cert,
            &self.tenant_key,
            &self.server_config,
            &self.client_config,
        ]
    }
}

/// Writes a deployment directory; see the module documentation.
pub fn init(options: &InitOptions) -> Result<InitReport, InitError> {
    std::fs::create_dir_all(&options.dir).map_err(|source| InitError::Io {
        path: options.dir.clone(),
        source,
    })?;
    let dir = std::fs::canonicalize(&options.dir).map_err(|source| InitError::Io {
        path: options.dir.clone(),
        source,
    })?;
    let mut files = DeploymentFiles::new(&dir, &options.tenant);
    if let Some(state_dir) = &options.state_dir {
        // Absolute, as server.toml must say it.
        files.store = std::path::absolute(state_dir)
            .map_err(|source| InitError::Io {
                path: state_dir.clone(),
                source,
            })?
            .join("hsmlink.db");
    }
    files.root_key_credential = options.root_key_credential;
    // symlink_metadata: a dangling symlink counts as existing too.
    let existing: Vec<PathBuf> = files
        .written()
        .iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .map(|p| p.to_path_buf())
        .collect();
    if !existing.is_empty() {
        return Err(InitError::Exists(existing));
    }

    let now = OffsetDateTime::now_utc();
    let ca = generate_ca(
        "hsmlink tenant CA",
        now - BACKDATE,
        now + Duration::days(CA_VALIDITY_DAYS),
    )?;
    let server = issue_server_certificate(
        &ca.cert_pem,
        &ca.key_pem,
        &server_names(&options.listen),
        now - BACKDATE,
        now + Duration::days(SERVER_VALIDITY_DAYS),
    )?;
    let tenant = issue_tenant_certificate(
        &ca.cert_pem,
        &ca.key_pem,
        options.tenant.as_str(),
        now - BACKDATE,
        now + Duration::days(TENANT_VALIDITY_DAYS),
    )?;
    let admin_ca = generate_ca(
        "hsmlink provider-admin CA",
        now - BACKDATE,
        now + Duration::days(CA_VALIDITY_DAYS),
    )?;
    let admin = issue_client_certificate(
        &admin_ca.cert_pem,
        &admin_ca.key_pem,
        "provider-admin",
        &[format!("{ADMIN_URI_PREFIX}admin")],
        now - BACKDATE,
        now + Duration::days(ADMIN_VALIDITY_DAYS),
    )?;
    let admin_listen = options
        .admin_listen
        .clone()
        .unwrap_or_else(|| default_admin_listen(&options.listen));
    let server_toml = server_toml(&files, &options.listen, &options.tenant, &random_serial()?)?;
    let server_toml = with_admin_section(&server_toml, &files, &admin_listen)?;
    let client_toml = client_toml(&files, &options.listen)?;
    let root_key = RootKey::generate()
        .map_err(|e| InitError::Certificate(e.to_string()))?
        .to_hex();

    let contents: [(&Path, &str, u32); 13] = [
        (&files.admin_ca_cert, &admin_ca.cert_pem, PUBLIC_MODE),
        (&files.admin_ca_key, &admin_ca.key_pem, KEY_MODE),
        (&files.admin_cert, &admin.cert_pem, PUBLIC_MODE),
        (&files.admin_key, &admin.key_pem, KEY_MODE),
        (&files.root_key, &root_key, KEY_MODE),
        (&files.ca_cert, &ca.cert_pem, PUBLIC_MODE),
        (&files.ca_key, &ca.key_pem, KEY_MODE),
        (&files.server_cert, &server.cert_pem, PUBLIC_MODE),
        (&files.server_key, &server.key_pem, KEY_MODE),
        (&files.tenant_cert, &tenant.cert_pem, PUBLIC_MODE),
        (&files.tenant_key, &tenant.key_pem, KEY_MODE),
        (&files.server_config, &server_toml, PUBLIC_MODE),
        (&files.client_config, &client_toml, PUBLIC_MODE),
    ];
    let mut written = Vec::new();
    for (path, text, mode) in contents {
        if let Err(e) = write_new(path, text, mode) {
            // Leave the directory as we found it.
            for path in &written {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        written.push(path.to_path_buf());
    }
    Ok(InitReport {
        dir,
        files: written,
        server_config: files.server_config,
        client_config: files.client_config,
    })
}

/// Creates `path` (which must not exist) with `mode` and writes `text`.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), InitError> {
    let io = |source| InitError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// A self-signed CA certificate and key.
pub fn generate_ca(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertifiedKey, InitError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = base_params(common_name, not_before, not_after)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// A server certificate for `names` (IP addresses or DNS names), signed by the CA.
pub fn issue_server_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertifiedKey, InitError> {
    let mut params = base_params("hsmlink-server", not_before, not_after)?;
    for name in names {
        params.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(Ia5String::try_from(name.as_str())?),
        });
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue(ca_cert_pem, ca_key_pem, &params)
}

/// A tenant's client certificate: CN and SAN URI `hsmlink:tenant:<tenant>`.
pub fn issue_tenant_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    tenant: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertifiedKey, InitError> {
    let tenant = TenantName::parse(tenant).map_err(|e| InitError::Certificate(e.to_string()))?;
    issue_client_certificate(
        ca_cert_pem,
        ca_key_pem,
        tenant.as_str(),
        &[format!("{TENANT_URI_PREFIX}{tenant}")],
        not_before,
        not_after,
    )
}

/// A tenant certificate for the public key of a PKCS#10 request (PEM, its
/// signature checked): nothing else of the request is used — subject, SAN
/// URI `hsmlink:tenant:<tenant>`, usage and validity are the CA's choice.
pub fn issue_tenant_certificate_for_csr(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    tenant: &str,
    csr_pem: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, InitError> {
    let tenant = TenantName::parse(tenant).map_err(|e| InitError::Certificate(e.to_string()))?;
    let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
    let mut params = base_params(tenant.as_str(), not_before, not_after)?;
    params
        .subject_alt_names
        .push(SanType::URI(Ia5String::try_from(format!(
            "{TENANT_URI_PREFIX}{tenant}"
        ))?));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let csr = rcgen::CertificateSigningRequestParams {
        params,
        public_key: request.public_key,
    };
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    Ok(csr.signed_by(&issuer)?.pem())
}

/// A client certificate with any common name and SAN URIs (tests use it for
/// certificates naming no tenant, or two).
pub fn issue_client_certificate(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    common_name: &str,
    san_uris: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertifiedKey, InitError> {
    let mut params = base_params(common_name, not_before, not_after)?;
    for uri in san_uris {
        params
            .subject_alt_names
            .push(SanType::URI(Ia5String::try_from(uri.as_str())?));
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    issue(ca_cert_pem, ca_key_pem, &params)
}

fn base_params(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, InitError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "hsmlink");
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_certificate_serial()?);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// Signs `params` with a fresh P-256 key, under the CA given as PEM.
fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    params: &CertificateParams,
) -> Result<CertifiedKey, InitError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// localhost, 127.0.0.1, ::1, and the listen host if it is another name
/// (an unspecified address such as 0.0.0.0 is not a name to connect to).
fn server_names(listen: &ListenAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_owned(),
        Ipv4Addr::LOCALHOST.to_string(),
        Ipv6Addr::LOCALHOST.to_string(),
    ];
    let host = listen.host();
    let unspecified = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let known = names.iter().any(|n| n == host)
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| names.iter().any(|n| n.parse::<IpAddr>().ok() == Some(ip)));
    if !unspecified && !known {
        names.push(host.to_owned());
    }
    names
}

/// The address the module should dial: the listen address, unless it is an
/// unspecified address (0.0.0.0, ::), which means "this machine".
fn client_address(listen: &ListenAddr) -> String {
    match listen.host().parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => format!("127.0.0.1:{}", listen.port()),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => format!("[::1]:{}", listen.port()),
        _ => listen.as_str().to_owned(),
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], InitError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| InitError::Certificate("the system random generator failed".to_owned()))?;
    Ok(bytes)
}

fn random_certificate_serial() -> Result<SerialNumber, InitError> {
    let mut bytes = random_bytes::<16>()?;
    // RFC 5280: a positive integer; clear the sign bit, keep it non-zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// 16 hex characters: the token serial number of a new slot.
pub fn random_serial() -> Result<String, InitError> {
    Ok(random_bytes::<8>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A TOML basic string holding `path`.
fn toml_path(path: &Path) -> Result<String, InitError> {
    let text = path
        .to_str()
        .ok_or_else(|| InitError::NotUtf8(path.to_owned()))?;
    Ok(toml_string(text))
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// `assignment`, then `comment` from column `column` (or two spaces on).
fn commented(assignment: &str, comment: &str, column: usize) -> String {
    let pad = column.saturating_sub(assignment.len()).max(2);
    format!("{assignment}{:pad$}{comment}\n", "")
}

/// The `server.toml` init writes (format: [`crate::config`]).
pub fn server_toml(
    files: &DeploymentFiles,
    listen: &ListenAddr,
    tenant: &TenantName,
    serial: &str,
) -> Result<String, InitError> {
    const C: usize = 35;
    let mut out = String::new();
    out.push_str("# hsmlink-server configuration, written by `hsmlink-server init`.\n");
    out.push_str(
        "# Unknown keys are errors. Relative paths are relative to this file's directory.\n",
    );
    out.push_str("\n[server]\n");
    let listen_line = format!("listen = {}", toml_string(listen.as_str()));
    out.push_str(&commented(
        &listen_line,
        "# HOST:PORT for tenant connections",
        C,
    ));
    out.push_str(&commented(
        "tls_min_version = \"1.3\"",
        "# \"1.3\" (default) or \"1.2\"",
        C,
    ));
    out.push_str(&commented(
        "log_level = \"info\"",
        "# tracing filter directive, e.g. \"info,hsmlink_server=debug\";",
        C,
    ));
    out.push_str(&commented(
        "",
        "# the RUST_LOG environment variable overrides it",
        C,
    ));
    out.push_str(&commented(
        "handshake_timeout_ms = 10000",
        "# TLS handshake and hello must finish within this time",
        C,
    ));
    out.push_str(&commented(
        "max_in_flight_per_connection = 64",
        "# requests one connection may have in flight at once",
        C,
    ));
    out.push_str(&commented(
        "shutdown_grace_ms = 10000",
        "# on SIGTERM/SIGINT, time left to in-flight requests",
        C,
    ));
    out.push_str(&commented(
        "app_grace_ms = 60000",
        "# an application without connections for this long is",
        C,
    ));
    out.push_str(&commented(
        "",
        "# gone: its sessions close and it is logged out",
        C,
    ));
    out.push_str("\n[tls]\n");
    out.push_str(&commented(
        &format!("cert = {}", toml_path(&files.server_cert)?),
        "# server certificate chain (PEM), leaf first",
        C,
    ));
    out.push_str(&commented(
        &format!("key = {}", toml_path(&files.server_key)?),
        "# its private key (PEM: PKCS#8, SEC1 or PKCS#1)",
        C,
    ));
    out.push_str(&commented(
        &format!("tenant_ca = {}", toml_path(&files.ca_cert)?),
        "# CA certificate(s) that issue tenant client certificates",
        C,
    ));
    out.push_str("\n[store]\n");
    out.push_str(&commented(
        &format!("path = {}", toml_path(&files.store)?),
        "# SQLite database file; its directory must exist",
        C,
    ));
    out.push_str("\n[security]");
    out.push_str(&commented(
        "",
        "# optional table; every key has a default",
        C - "[security]".len(),
    ));
    out.push_str(&commented(
        "max_pin_failures = 10",
        "# wrong PINs in a row before a PIN locks",
        C,
    ));
    out.push_str(&commented(
        "require_user_pin_change = true",
        "# a user PIN set by the SO (C_InitPIN) must be changed",
        C,
    ));
    out.push_str(&commented(
        "",
        "# by the user (C_SetPIN) before it can be used",
        C,
    ));
    out.push_str(&commented(
        "argon2_memory_kib = 19456",
        "# argon2id cost of PIN hashes: memory (KiB),",
        C,
    ));
    out.push_str(&commented("argon2_iterations = 2", "# passes,", C));
    out.push_str(&commented("argon2_parallelism = 1", "# and lanes", C));
    out.push_str("\n[soft]");
    out.push_str(&commented(
        "",
        "# the software HSM's root key: one of these two, or",
        C - "[soft]".len(),
    ));
    out.push_str(&commented(
        "",
        "# neither and the systemd credential hsmlink-root-key",
        C,
    ));
    let root_key_line = format!("root_key_file = {}", toml_path(&files.root_key)?);
    if files.root_key_credential {
        // The line stays, commented out, to say where the key is.
        out.push_str(&commented(
            &format!("# {root_key_line}"),
            "# (unused: LoadCredential=hsmlink-root-key:<this file>)",
            C,
        ));
    } else {
        out.push_str(&commented(
            &root_key_line,
            "# file with the 32-byte root key (64 hex digits), mode 0600",
            C,
        ));
    }
    out.push_str(&commented(
        "# root_key_env = \"HSMLINK_ROOT_KEY\"",
        "# or: environment variable holding the 64 hex digits",
        C,
    ));
    out.push_str("\n[[tenants]]");
    out.push_str(&commented(
        "",
        "# one table per tenant",
        C - "[[tenants]]".len(),
    ));
    out.push_str(&commented(
        &format!("name = {}", toml_string(tenant.as_str())),
        "# the NAME of the client certificate's SAN URI",
        C,
    ));
    out.push_str(&commented(
        "",
        "# hsmlink:tenant:NAME; [a-z0-9][a-z0-9_-]{0,62}",
        C,
    ));
    out.push_str("\n[[tenants.slots]]");
    out.push_str(&commented(
        "",
        "# one table per slot the tenant sees",
        C - "[[tenants.slots]]".len(),
    ));
    out.push_str(&commented(
        "id = 0",
        "# slot id the tenant's applications see (unique per tenant)",
        C,
    ));
    out.push_str(&commented(
        &format!("partition = {}", toml_string(&format!("{tenant}-p0"))),
        "# partition name, unique across the server",
        C,
    ));
    out.push_str(&commented(
        "driver = \"soft\"",
        "# HSM driver: \"soft\" (the built-in software HSM)",
        C,
    ));
    out.push_str(&commented(
        &format!("serial = {}", toml_string(serial)),
        "# token serial number, 1 to 16 printable ASCII characters",
        C,
    ));
    out.push_str(&commented(
        "algorithms = \"international\"",
        "# soft driver: objects sealed with AES-256-GCM",
        C,
    ));
    out.push_str(&commented(
        "",
        "# (\"international\", default) or SM4-GCM (\"gmt\");",
        C,
    ));
    out.push_str(&commented(
        "",
        "# fixed when the partition is first allocated",
        C,
    ));
    out.push_str(&commented(
        "# secure_templates = \"strict\"",
        "# key-management rules (default \"strict\"); \"relaxed\"",
        C,
    ));
    out.push_str(&commented(
        "",
        "# for clients whose templates mix key roles (README)",
        C,
    ));
    Ok(out)
}

/// `server_toml` with the `[admin]` section after `[store]`.
fn with_admin_section(
    server_toml: &str,
    files: &DeploymentFiles,
    listen: &ListenAddr,
) -> Result<String, InitError> {
    const C: usize = 35;
    let mut section = String::from("\n[admin]");
    section.push_str(&commented(
        "",
        "# the provider's administration API (HTTPS, mutual TLS)",
        C - "[admin]".len(),
    ));
    section.push_str(&commented(
        &format!("listen = {}", toml_string(listen.as_str())),
        "# HOST:PORT of the admin listener",
        C,
    ));
    section.push_str(&commented(
        &format!("admin_ca = {}", toml_path(&files.admin_ca_cert)?),
        "# provider-admin CA: its certificates may administer",
        C,
    ));
    let key_line = format!("tenant_ca_key = {}", toml_path(&files.ca_key)?);
    if files.root_key_credential {
        // The service user cannot read the CA key (mode 0600, root's).
        section.push_str(&commented(
            &format!("# {key_line}"),
            "# the tenant CA's key, for issuing through the API",
            C,
        ));
        section.push_str(&commented(
            "",
            "# (needs a copy the service user may read)",
            C,
        ));
    } else {
        section.push_str(&commented(
            &key_line,
            "# the tenant CA's key: the API issues tenant certificates",
            C,
        ));
    }
    let marker = "\n[security]";
    Ok(match server_toml.find(marker) {
        Some(at) => format!("{}{section}{}", &server_toml[..at], &server_toml[at..]),
        None => format!("{server_toml}{section}"),
    })
}

/// The module's `client.toml`, in the contract's format.
pub fn client_toml(files: &DeploymentFiles, listen: &ListenAddr) -> Result<String, InitError> {
    const C: usize = 38;
    let dir = files.client_config.parent().unwrap_or(Path::new("/"));
    let mut out = String::from("# hsmlink PKCS#11 module configuration\n");
    out.push_str(&commented(
        &format!("servers = [{}]", toml_string(&client_address(listen))),
        "# one or more HOST:PORT, tried in order",
        C,
    ));
    out.push_str(&commented(
        "# server_name = \"localhost\"",
        "# optional: name to verify in the server certificate;",
        C,
    ));
    out.push_str(&commented(
        "",
        "# default: the host part of each address",
        C,
    ));
    out.push_str(&commented(
        &format!("ca = {}", toml_path(&files.ca_cert)?),
        "# CA that signed the server certificate",
        C,
    ));
    out.push_str(&commented(
        &format!("cert = {}", toml_path(&files.tenant_cert)?),
        "# this tenant's client certificate",
        C,
    ));
    out.push_str(&commented(
        &format!("key = {}", toml_path(&files.tenant_key)?),
        "# and its private key (PKCS#8 PEM)",
        C,
    ));
    out.push_str(&commented(
        "connect_timeout_ms = 3000",
        "# optional, default 3000",
        C,
    ));
    out.push_str(&commented(
        "io_timeout_ms = 30000",
        "# optional, default 30000",
        C,
    ));
    out.push_str(&commented(
        "log_level = \"warn\"",
        "# optional: off|error|warn|info|debug|trace",
        C,
    ));
    out.push_str(&commented(
        &format!("# log_file = {}", toml_path(&dir.join("client.log"))?),
        "# optional, default stderr",
        C,
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::config::Config;

    fn options(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_owned(),
            listen: ListenAddr::parse("127.0.0.1:7700").unwrap(),
            tenant: TenantName::parse("demo").unwrap(),
            state_dir: None,
            root_key_credential: false,
            admin_listen: None,
        }
    }

    #[test]
    fn init_writes_the_deployment() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("deploy");
        let report = init(&options(&dir)).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(report.dir, dir);
        for name in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "server-key.pem",
            "demo.pem",
            "demo-key.pem",
            "server.toml",
            "client.toml",
            "root.key",
        ] {
            let meta = std::fs::metadata(dir.join(name)).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if name.ends_with("-key.pem") || name == "root.key" {
                assert_eq!(mode, 0o600, "{name}");
            } else {
                assert_eq!(mode & 0o600, 0o600, "{name}");
            }
        }
        assert_eq!(report.files.len(), 13);
        for name in [
            "admin-ca.pem",
            "admin-ca-key.pem",
            "admin.pem",
            "admin-key.pem",
        ] {
            assert!(dir.join(name).exists(), "{name}");
        }
        assert!(!dir.join("hsmlink.db").exists());
    }

    #[test]
    fn the_written_server_toml_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let report = init(&options(tmp.path())).unwrap();
        let config = Config::load(&report.server_config).unwrap();
        assert_eq!(config.server.listen.as_str(), "127.0.0.1:7700");
        assert_eq!(config.tenants.len(), 1);
        assert_eq!(config.tenants[0].name.as_str(), "demo");
        let slot = &config.tenants[0].slots[0];
        assert_eq!(slot.id, 0);
        assert_eq!(slot.partition.as_str(), "demo-p0");
        assert_eq!(slot.serial.as_str().len(), 16);
        assert_eq!(config.store.path, report.dir.join("hsmlink.db"));
        // And its TLS material makes a server configuration.
        crate::tls::server_config(&config.tls, config.server.tls_min_version).unwrap();
        // The root key loads, the security section has its defaults.
        assert_eq!(
            config.soft.root_key_file.as_deref(),
            Some(report.dir.join("root.key").as_path())
        );
        RootKey::load(config.soft.root_key_source().as_ref()).unwrap();
        assert_eq!(config.security.max_pin_failures.get(), 10);
        assert!(config.security.require_user_pin_change);
        assert_eq!(config.server.app_grace_ms, 60_000);
        assert_eq!(
            config.security.policy().pin_hash,
            crate::soft::pins::PinHashParams::DEFAULT
        );
    }

    #[test]
    fn client_toml_has_the_contract_shape() {
        let tmp = tempfile::tempdir().unwrap();
        let report = init(&options(tmp.path())).unwrap();
        let text = std::fs::read_to_string(&report.client_config).unwrap();
        let d = report.dir.display();
        let expected = format!(
            r#"# hsmlink PKCS#11 module configuration
servers = ["127.0.0.1:7700"]          # one or more HOST:PORT, tried in order
# server_name = "localhost"           # optional: name to verify in the server certificate;
                                      # default: the host part of each address
ca = "{d}/ca.pem"{}# CA that signed the server certificate
"#,
            " ".repeat(
                38usize
                    .saturating_sub(format!("ca = \"{d}/ca.pem\"").len())
                    .max(2)
            )
        );
        assert!(text.starts_with(&expected), "{text}");
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(
            value["cert"].as_str(),
            Some(format!("{d}/demo.pem").as_str())
        );
        assert_eq!(
            value["key"].as_str(),
            Some(format!("{d}/demo-key.pem").as_str())
        );
        assert_eq!(value["connect_timeout_ms"].as_integer(), Some(3000));
        assert_eq!(value["io_timeout_ms"].as_integer(), Some(30000));
        assert_eq!(value["log_level"].as_str(), Some("warn"));
        assert_eq!(value.len(), 7, "{value:?}");
    }

    #[test]
    fn init_refuses_to_overwrite_and_writes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("demo-key.pem"), "mine").unwrap();
        let err = init(&options(tmp.path())).unwrap_err();
        assert!(
            matches!(err, InitError::Exists(ref p) if p.len() == 1),
            "{err}"
        );
        assert!(err.to_string().contains("demo-key.pem"), "{err}");
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("demo-key.pem")).unwrap(),
            "mine"
        );
        // A second init over a complete deployment is refused as well.
        let tmp = tempfile::tempdir().unwrap();
        init(&options(tmp.path())).unwrap();
        assert!(matches!(init(&options(tmp.path())), Err(InitError::Exists(p)) if p.len() == 13));
    }

    /// The packaged service's layout: the store in systemd's state
    /// directory, the root key from the credential, not from server.toml.
    #[test]
    fn systemd_layout_moves_the_store_and_the_root_key_out() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let report = init(&InitOptions {
            state_dir: Some(state.clone()),
            root_key_credential: true,
            ..options(&tmp.path().join("etc"))
        })
        .unwrap();
        // systemd makes the StateDirectory when the service starts.
        std::fs::create_dir(&state).unwrap();
        let config = Config::load(&report.server_config).unwrap();
        assert_eq!(config.store.path, state.join("hsmlink.db"));
        assert_eq!(config.soft.root_key_file, None);
        assert!(config.soft.root_key_env.is_none());
        // The key the credential will carry is still written beside it.
        assert!(report.dir.join("root.key").exists());
        let text = std::fs::read_to_string(&report.server_config).unwrap();
        assert!(text.contains("# root_key_file = "), "{text}");
    }

    #[test]
    fn other_tenant_and_listen_address() {
        let tmp = tempfile::tempdir().unwrap();
        let report = init(&InitOptions {
            dir: tmp.path().to_owned(),
            listen: ListenAddr::parse("0.0.0.0:7801").unwrap(),
            tenant: TenantName::parse("acme").unwrap(),
            state_dir: None,
            root_key_credential: false,
            admin_listen: None,
        })
        .unwrap();
        assert!(report.dir.join("acme.pem").exists());
        assert!(report.dir.join("acme-key.pem").exists());
        let client = std::fs::read_to_string(&report.client_config).unwrap();
        assert!(
            client.contains("servers = [\"127.0.0.1:7801\"]"),
            "{client}"
        );
        let config = Config::load(&report.server_config).unwrap();
        assert_eq!(config.server.listen.as_str(), "0.0.0.0:7801");
        assert_eq!(config.tenants[0].slots[0].partition.as_str(), "acme-p0");
    }

    #[test]
    fn the_admin_section_is_written_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let report = init(&options(tmp.path())).unwrap();
        let config = Config::load(&report.server_config).unwrap();
        let admin = config.admin.expect("an [admin] section");
        assert_eq!(admin.listen.as_str(), "127.0.0.1:7701");
        assert_eq!(admin.admin_ca, report.dir.join("admin-ca.pem"));
        assert_eq!(admin.tenant_ca_key, Some(report.dir.join("ca-key.pem")));
        // Admin certificates come from a CA of their own.
        assert_ne!(
            std::fs::read(report.dir.join("admin-ca.pem")).unwrap(),
            std::fs::read(report.dir.join("ca.pem")).unwrap()
        );
        let listen = |l: &str| default_admin_listen(&ListenAddr::parse(l).unwrap()).to_string();
        assert_eq!(listen("0.0.0.0:7700"), "127.0.0.1:7701");
        assert_eq!(listen("[::]:7700"), "[::1]:7701");
        assert_eq!(listen("127.0.0.1:65535"), "127.0.0.1:65534");
    }

    #[test]
    fn csr_certificates_take_only_the_public_key() {
        let now = OffsetDateTime::now_utc();
        let ca = generate_ca("ca", now - Duration::days(1), now + Duration::days(1)).unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            Ia5String::try_from("hsmlink:tenant:other").unwrap(),
        ));
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = issue_tenant_certificate_for_csr(
            &ca.cert_pem,
            &ca.key_pem,
            "acme",
            &csr,
            now - Duration::days(1),
            now + Duration::days(1),
        )
        .unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let identity = crate::identity::identify(&der).unwrap();
        assert_eq!(identity.tenant.as_str(), "acme");
        assert!(
            issue_tenant_certificate_for_csr(
                &ca.cert_pem,
                &ca.key_pem,
                "acme",
                "not a csr",
                now,
                now
            )
            .is_err()
        );
    }

    #[test]
    fn server_names_cover_the_listen_host() {
        let names = |l: &str| server_names(&ListenAddr::parse(l).unwrap());
        assert_eq!(names("127.0.0.1:1"), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(names("[::1]:1").len(), 3);
        assert_eq!(names("0.0.0.0:1").len(), 3);
        assert_eq!(names("hsm.example:1")[3], "hsm.example");
        assert_eq!(names("10.1.2.3:1")[3], "10.1.2.3");
    }
}
