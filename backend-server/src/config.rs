//! `server.toml`, the server's configuration.
//!
//! `hsmlink-server init` writes one; `hsmlink-server run --config FILE` reads
//! it. Every table rejects unknown keys. Relative paths are taken relative to
//! the directory of the configuration file. A bad file gives one line naming
//! the file, the line (when known), the key and what is wrong.
//!
//! ```toml
//! [server]                           # optional table; every key has a default
//! listen = "127.0.0.1:7700"          # HOST:PORT for tenant connections (default 127.0.0.1:7700)
//! tls_min_version = "1.3"            # "1.3" (default) or "1.2"
//! log_level = "info"                 # tracing filter directive, e.g. "info,hsmlink_server=debug";
//!                                    # the RUST_LOG environment variable overrides it
//! handshake_timeout_ms = 10000       # TLS handshake and hello must finish within this time
//! max_in_flight_per_connection = 64  # requests one connection may have in flight at once
//! max_connections = 4096             # open connections on the server at most; more are
//!                                    # closed at once, before the TLS handshake
//! max_connections_per_tenant = 512   # open connections of one tenant at most; more get a
//!                                    # hello refusal (other tenants are not affected); the
//!                                    # module opens one per call in flight, so this bounds
//!                                    # a tenant's concurrent calls too
//! shutdown_grace_ms = 10000          # on SIGTERM/SIGINT, time left to in-flight requests
//! app_grace_ms = 60000               # an application without connections for this long is
//!                                    # gone: its sessions close and it is logged out
//!
//! [tls]
//! cert = "/abs/server.pem"           # server certificate chain (PEM), leaf first
//! key = "/abs/server-key.pem"        # its private key (PEM: PKCS#8, SEC1 or PKCS#1)
//! tenant_ca = "/abs/ca.pem"          # CA certificate(s) that issue tenant client certificates
//!
//! [store]
//! path = "/abs/hsmlink.db"           # SQLite database file; its directory must exist
//!
//! [security]                         # optional table; every key has a default
//! max_pin_failures = 10              # wrong PINs in a row before a PIN locks
//! require_user_pin_change = true     # a user PIN set by the SO (C_InitPIN) must be changed
//!                                    # by the user (C_SetPIN) before it can be used
//! argon2_memory_kib = 19456          # argon2id cost of PIN hashes: memory (KiB),
//! argon2_iterations = 2              # passes,
//! argon2_parallelism = 1             # and lanes
//! login_idle_timeout_s = 7200        # login state ends after this long without a call
//! login_max_lifetime_s = 28800       # and this long after the login, whatever the activity
//!                                    # (larger values are accepted with a warning at start)
//! login_failures_per_source = 20     # wrong PINs from one IP address within the window that
//! login_failure_window_s = 60        # refuse every PIN-checking call from that address
//! login_source_cooldown_s = 300      # (CKR_FUNCTION_REJECTED) for the cool-down; 0 = off
//!
//! [audit]                            # optional table; every key has a default
//! # key_file = "/abs/audit.key"      # Ed25519 seed (64 hex digits, mode 0600) signing the
//!                                    # chain heads; default audit.key beside the database,
//!                                    # made at the first start if missing
//! retention_days = 0                 # records older than this are deleted (with a signed
//!                                    # audit.pruned record); 0 keeps them forever
//! sign_every_records = 1000          # sign a chain head every this many records of a chain,
//! sign_interval_s = 60               # every this many seconds if it grew, and at shutdown
//! queue_capacity = 4096              # records queued without waiting, at most
//! durability = "fsync"               # "fsync": a record is on disk before the reply it
//!                                    # describes; "os": handed to the OS (a server crash
//!                                    # loses nothing, a power loss may lose the last commits)
//!
//! [metering]                         # optional table
//! flush_interval_s = 60              # counters go to the store this often and at shutdown
//!
//! [admin]                            # optional: the provider's administration listener
//! listen = "127.0.0.1:7701"          # HOST:PORT (HTTPS with client certificates)
//! admin_ca = "/abs/admin-ca.pem"     # provider-admin CA: its certificates may administer
//! tenant_ca_key = "/abs/ca-key.pem"  # the tenant CA's key: the API issues tenant certificates
//!
//! [soft]                             # the software HSM's root key: one of these two, or
//!                                    # neither and the systemd credential hsmlink-root-key
//! root_key_file = "/abs/root.key"    # file with the 32-byte root key (64 hex digits), mode 0600
//! # root_key_env = "HSMLINK_ROOT_KEY"  # or: environment variable holding the 64 hex digits
//!
//! [[tenants]]                        # one table per tenant
//! name = "demo"                      # the NAME of the client certificate's SAN URI
//!                                    # hsmlink:tenant:NAME; [a-z0-9][a-z0-9_-]{0,62}
//!
//! [[tenants.slots]]                  # one table per slot the tenant sees
//! id = 0                             # slot id the tenant's applications see (unique per tenant)
//! partition = "demo-p0"              # partition name, unique across the server
//! driver = "soft"                    # HSM driver: "soft" (the built-in software HSM) or
//!                                    # "pkcs11" (a token of a vendor module, see [[devices]])
//! serial = "9f3c2a7e51d04b86"        # token serial number, 1 to 16 printable ASCII characters
//! algorithms = "international"       # soft driver: objects sealed with AES-256-GCM
//!                                    # ("international", default) or SM4-GCM ("gmt");
//!                                    # fixed when the partition is first allocated
//! # device = "hsm0"                  # pkcs11 driver (required there, refused elsewhere):
//!                                    # the [[devices]] entry holding the partition; a device
//!                                    # holds one partition
//! # replicas = ["hsm1"]              # pkcs11 driver: devices holding copies (failover)
//! # secure_templates = "strict"      # key-management rules above the driver: "strict"
//!                                    # (default) or "relaxed" (PKCS#11's rules and sticky
//!                                    # usage only); see crate::secure_templates
//!
//! [[devices]]                        # one table per vendor token (pkcs11 driver)
//! name = "hsm0"                      # [a-z0-9][a-z0-9_-]{0,62}, unique
//! module = "/usr/lib/softhsm/libsofthsm2.so"  # the vendor's PKCS#11 library
//! token_label = "dev0"               # the token: by label, or
//! # token_serial = "1a2b3c4d5e6f7a8b"  # by serial number (exactly one of the two)
//! pin_env = "HSMLINK_DEV0_PIN"       # the device's user PIN: environment variable, or
//! # pin_file = "/abs/dev0.pin"         # file (trailing newline ignored); exactly one of the
//!                                    # two, never the PIN itself in this file
//! max_sessions = 8                   # device sessions in the pool (default 8)
//! session_wait_ms = 5000             # a call waits this long for a free device session,
//!                                    # then fails with CKR_DEVICE_MEMORY (default 5000)
//! call_timeout_ms = 10000            # a device call slower than this takes the device out
//!                                    # of service (checked again with back-off; default 10000)
//! ```

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::names::{PartitionName, TenantName, TokenSerial};
use crate::ratelimit::ThrottleSettings;
use crate::sessions::LoginLimits;
use crate::soft::keys::{Algorithms, RootKeySource};
use crate::soft::partition::SecurityPolicy;
use crate::soft::pins::PinHashParams;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
const DEFAULT_HANDSHAKE_TIMEOUT_MS: NonZeroU64 = NonZeroU64::new(10_000).unwrap();
const DEFAULT_MAX_IN_FLIGHT: NonZeroU32 = NonZeroU32::new(64).unwrap();

/// The whole of `server.toml`, parsed, checked, with absolute paths.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    pub tls: TlsSection,
    pub store: StoreSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub soft: SoftSection,
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub metering: MeteringSection,
    /// `[admin]`: the provider's administration listener (none without it).
    #[serde(default)]
    pub admin: Option<AdminSection>,
}

/// `[admin]`: the provider's administration plane (see [`crate::admin`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// HOST:PORT of the admin listener (HTTPS, mutual TLS).
    pub listen: ListenAddr,
    /// The provider-admin CA: certificates it issued may administer.
    pub admin_ca: PathBuf,
    /// The tenant CA's private key (the CA of `[tls] tenant_ca`): lets the
    /// admin API issue tenant certificates. Without it, it cannot.
    pub tenant_ca_key: Option<PathBuf>,
}

/// `[audit]`: the audit log (see [`crate::audit`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    pub key_file: Option<PathBuf>,
    pub retention_days: u32,
    pub sign_every_records: NonZeroU64,
    pub sign_interval_s: NonZeroU64,
    pub queue_capacity: NonZeroU32,
    pub durability: AuditDurability,
}

/// `[audit] durability`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDurability {
    /// On disk (fsync) before the reply.
    #[default]
    Fsync,
    /// In the operating system before the reply.
    Os,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            key_file: None,
            retention_days: 0,
            sign_every_records: NonZeroU64::new(1000).unwrap_or(NonZeroU64::MIN),
            sign_interval_s: NonZeroU64::new(60).unwrap_or(NonZeroU64::MIN),
            queue_capacity: NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
            durability: AuditDurability::Fsync,
        }
    }
}

/// `[metering]`: see [`crate::metering`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeteringSection {
    pub flush_interval_s: NonZeroU64,
}

impl Default for MeteringSection {
    fn default() -> Self {
        Self {
            flush_interval_s: NonZeroU64::new(60).unwrap_or(NonZeroU64::MIN),
        }
    }
}

impl Config {
    /// The audit writer's settings.
    pub fn audit_settings(&self) -> crate::audit::AuditSettings {
        let mut s = crate::audit::AuditSettings::new(&self.store.path);
        if let Some(key) = &self.audit.key_file {
            s.key_file = key.clone();
        }
        s.retention_days = Some(self.audit.retention_days).filter(|d| *d > 0);
        s.sign_every_records = self.audit.sign_every_records.get();
        s.sign_interval = Duration::from_secs(self.audit.sign_interval_s.get());
        s.queue_capacity = usize::try_from(self.audit.queue_capacity.get()).unwrap_or(4096);
        s.metering_flush = Duration::from_secs(self.metering.flush_interval_s.get());
        s.fsync = self.audit.durability == AuditDurability::Fsync;
        s
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: ListenAddr,
    pub tls_min_version: TlsMinVersion,
    pub log_level: LogLevel,
    pub handshake_timeout_ms: NonZeroU64,
    pub max_in_flight_per_connection: NonZeroU32,
    pub max_connections: NonZeroU32,
    pub max_connections_per_tenant: NonZeroU32,
    pub shutdown_grace_ms: u64,
    pub app_grace_ms: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: ListenAddr(DEFAULT_LISTEN.to_owned()),
            tls_min_version: TlsMinVersion::Tls13,
            log_level: LogLevel("info".to_owned()),
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            max_in_flight_per_connection: DEFAULT_MAX_IN_FLIGHT,
            max_connections: NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
            max_connections_per_tenant: NonZeroU32::new(512).unwrap_or(NonZeroU32::MIN),
            shutdown_grace_ms: 10_000,
            app_grace_ms: 60_000,
        }
    }
}

impl ServerSection {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms.get())
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn app_grace(&self) -> Duration {
        Duration::from_millis(self.app_grace_ms)
    }
}

/// `[security]`: PIN rules.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    pub max_pin_failures: NonZeroU32,
    pub require_user_pin_change: bool,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub login_idle_timeout_s: NonZeroU64,
    pub login_max_lifetime_s: NonZeroU64,
    pub login_failures_per_source: u32,
    pub login_failure_window_s: NonZeroU64,
    pub login_source_cooldown_s: NonZeroU64,
}

impl Default for SecuritySection {
    fn default() -> Self {
        let params = PinHashParams::DEFAULT;
        Self {
            max_pin_failures: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            require_user_pin_change: true,
            argon2_memory_kib: params.m_kib,
            argon2_iterations: params.t,
            argon2_parallelism: params.p,
            login_idle_timeout_s: NonZeroU64::new(LoginLimits::DEFAULT.idle.as_secs())
                .unwrap_or(NonZeroU64::MIN),
            login_max_lifetime_s: NonZeroU64::new(LoginLimits::DEFAULT.lifetime.as_secs())
                .unwrap_or(NonZeroU64::MIN),
            login_failures_per_source: ThrottleSettings::DEFAULT.max_failures,
            login_failure_window_s: NonZeroU64::new(ThrottleSettings::DEFAULT.window.as_secs())
                .unwrap_or(NonZeroU64::MIN),
            login_source_cooldown_s: NonZeroU64::new(ThrottleSettings::DEFAULT.cooldown.as_secs())
                .unwrap_or(NonZeroU64::MIN),
        }
    }
}

impl SecuritySection {
    /// The per-source limit on wrong PINs.
    pub fn login_throttle(&self) -> ThrottleSettings {
        ThrottleSettings {
            max_failures: self.login_failures_per_source,
            window: Duration::from_secs(self.login_failure_window_s.get()),
            cooldown: Duration::from_secs(self.login_source_cooldown_s.get()),
        }
    }

    /// How long login state lasts.
    pub fn login_limits(&self) -> LoginLimits {
        LoginLimits {
            idle: Duration::from_secs(self.login_idle_timeout_s.get()),
            lifetime: Duration::from_secs(self.login_max_lifetime_s.get()),
        }
    }

    /// Warnings for limits above the defaults (accepted, but longer than
    /// the issue's "never longer by default").
    pub fn login_limit_warnings(&self) -> Vec<String> {
        let limits = self.login_limits();
        let mut out = Vec::new();
        if limits.idle > LoginLimits::DEFAULT.idle {
            out.push(format!(
                "security.login_idle_timeout_s = {} is above the default {}",
                limits.idle.as_secs(),
                LoginLimits::DEFAULT.idle.as_secs()
            ));
        }
        if limits.lifetime > LoginLimits::DEFAULT.lifetime {
            out.push(format!(
                "security.login_max_lifetime_s = {} is above the default {}",
                limits.lifetime.as_secs(),
                LoginLimits::DEFAULT.lifetime.as_secs()
            ));
        }
        out
    }

    pub fn policy(&self) -> SecurityPolicy {
        SecurityPolicy {
            max_pin_failures: self.max_pin_failures.get(),
            require_user_pin_change: self.require_user_pin_change,
            pin_hash: PinHashParams {
                m_kib: self.argon2_memory_kib,
                t: self.argon2_iterations,
                p: self.argon2_parallelism,
            },
        }
    }
}

/// `[soft]`: where the software HSM's root key comes from.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftSection {
    pub root_key_file: Option<PathBuf>,
    pub root_key_env: Option<String>,
    /// The software integrity test at start: `when-present` (default)
    /// checks the executable against its integrity file if there is one,
    /// `required` also fails without it.
    #[serde(default)]
    pub integrity: IntegrityPolicy,
    /// The integrity file (default: the executable's path + `.hmac`).
    pub integrity_file: Option<PathBuf>,
}

/// `[soft] integrity`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntegrityPolicy {
    #[default]
    WhenPresent,
    Required,
}

impl SoftSection {
    /// The configured source; `None` means the systemd credential.
    pub fn root_key_source(&self) -> Option<RootKeySource> {
        match (&self.root_key_file, &self.root_key_env) {
            (Some(path), _) => Some(RootKeySource::File(path.clone())),
            (None, Some(name)) => Some(RootKeySource::Env(name.clone())),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub tenant_ca: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    pub path: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: TenantName,
    #[serde(default)]
    pub slots: Vec<SlotConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotConfig {
    pub id: u64,
    pub partition: PartitionName,
    pub driver: DriverKind,
    pub serial: TokenSerial,
    /// Soft driver: the cipher that seals the partition's objects.
    #[serde(default)]
    pub algorithms: AlgorithmsConfig,
    /// pkcs11 driver: the `[[devices]]` entry holding the partition.
    #[serde(default)]
    pub device: Option<DeviceName>,
    /// pkcs11 driver: more `[[devices]]` entries holding copies of the
    /// partition (replicas, see `pkcs11::replicas`).
    #[serde(default)]
    pub replicas: Vec<DeviceName>,
    /// The secure-template rules of the partition (`strict` by default).
    #[serde(default)]
    pub secure_templates: SecureTemplates,
}

/// `secure_templates` of a slot: which key-management rules hsmlink
/// enforces above the driver ([`crate::secure_templates`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureTemplates {
    /// Every rule: separate key roles, wrapping keys at least as strong as
    /// what they wrap and never known to a caller, wrapping keys leaving
    /// only in key blocks; and sticky usage attributes.
    #[default]
    Strict,
    /// PKCS#11's own rules and sticky usage attributes only, for clients
    /// whose default templates give one key conflicting roles.
    Relaxed,
}

/// A device name (`[[devices]] name`, a slot's `device`): same rule as
/// tenant and partition names.
pub type DeviceName = PartitionName;

/// `[[devices]]`: a token of a vendor PKCS#11 module, the HSM behind a
/// `pkcs11` partition.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: DeviceName,
    /// The vendor's PKCS#11 library.
    pub module: PathBuf,
    pub token_label: Option<String>,
    pub token_serial: Option<String>,
    /// Where the device's user PIN comes from: an environment variable...
    pub pin_env: Option<String>,
    /// ... or a file.
    pub pin_file: Option<PathBuf>,
    /// Device sessions in the pool.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: NonZeroU32,
    /// How long a call waits for a free device session.
    #[serde(default = "default_session_wait_ms")]
    pub session_wait_ms: u64,
    /// A device call that takes longer takes the device out of service
    /// (its answer is still used; a call cannot be taken back).
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
}

fn default_call_timeout_ms() -> u64 {
    10_000
}

fn default_max_sessions() -> NonZeroU32 {
    NonZeroU32::new(8).unwrap_or(NonZeroU32::MIN)
}

fn default_session_wait_ms() -> u64 {
    5_000
}

/// Which token of its module a device is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    Label(String),
    Serial(String),
}

/// Where a device's user PIN comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    Env(String),
    File(PathBuf),
}

impl DeviceConfig {
    /// Checked at parse time: exactly one of the two.
    pub fn token(&self) -> TokenSelector {
        match (&self.token_label, &self.token_serial) {
            (Some(label), _) => TokenSelector::Label(label.clone()),
            (None, Some(serial)) => TokenSelector::Serial(serial.clone()),
            (None, None) => TokenSelector::Label(String::new()),
        }
    }

    /// Checked at parse time: exactly one of the two.
    pub fn pin_source(&self) -> PinSource {
        match (&self.pin_env, &self.pin_file) {
            (Some(name), _) => PinSource::Env(name.clone()),
            (None, Some(path)) => PinSource::File(path.clone()),
            (None, None) => PinSource::Env(String::new()),
        }
    }

    pub fn session_wait(&self) -> Duration {
        Duration::from_millis(self.session_wait_ms)
    }
}

/// `algorithms` of a slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlgorithmsConfig {
    /// AES-256-GCM.
    #[default]
    International,
    /// SM4-GCM (GM/T).
    Gmt,
}

impl AlgorithmsConfig {
    pub fn soft(self) -> Algorithms {
        match self {
            Self::International => Algorithms::International,
            Self::Gmt => Algorithms::Gmt,
        }
    }
}

/// Which HSM driver holds a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// The built-in software HSM.
    Soft,
    /// A token of a vendor PKCS#11 module (`[[devices]]`).
    Pkcs11,
}

/// The lowest TLS version the server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TlsMinVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// `HOST:PORT`, checked for shape; resolved when the server binds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddr(String);

impl ListenAddr {
    pub fn parse(addr: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(addr)
            .ok_or_else(|| format!("{addr:?} is not HOST:PORT (e.g. \"127.0.0.1:7700\")"))?;
        if host.is_empty() {
            return Err(format!("{addr:?} has no host"));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{addr:?}: port must be a number from 0 to 65535"))?;
        Ok(Self(addr.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        split_host_port(&self.0).map_or("", |(host, _)| host)
    }

    pub fn port(&self) -> u16 {
        split_host_port(&self.0)
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or(0)
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(addr: String) -> Result<Self, String> {
        Self::parse(&addr)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `host:port` or `[v6]:port` into its parts.
fn split_host_port(addr: &str) -> Option<(&str, &str)> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, rest) = rest.split_once(']')?;
        Some((host, rest.strip_prefix(':')?))
    } else {
        let (host, port) = addr.rsplit_once(':')?;
        // A bare IPv6 address has more colons: require brackets.
        (!host.contains(':')).then_some((host, port))
    }
}

/// A `tracing_subscriber::EnvFilter` directive, checked at load time.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogLevel(String);

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(directive: String) -> Result<Self, String> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&directive)
            .map_err(|e| format!("invalid log filter {directive:?}: {e}"))?;
        Ok(Self(directive))
    }
}

/// What is wrong with a configuration file, as one line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted key path (`tls.cert`, `tenants[0].slots[1].id`), when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    fn new(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// toml's error, whose `Display` spans several lines, made one: line
    /// number from the span, key from the text at that line.
    fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> Self {
        let message = err
            .message()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let (line, key) = match err.span() {
            Some(span) => locate(text, span.start),
            None => (None, None),
        };
        Self {
            file: file.to_owned(),
            line,
            key,
            message,
        }
    }
}

/// 1-based line number of `offset` in `text`, and the dotted key written on
/// that line (or the table the line opens).
fn locate(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let Some(before) = text.get(..offset) else {
        return (None, None);
    };
    let line_no = before.matches('\n').count() + 1;
    let mut table = String::new();
    let mut key = None;
    for (i, line) in text.lines().enumerate().take(line_no) {
        let line = strip_comment(line).trim();
        if line.starts_with('[') {
            table = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
            key = Some(table.clone());
        } else if i + 1 == line_no {
            key = match line.split_once('=') {
                Some((k, _)) => {
                    let k = k.trim().trim_matches('"');
                    Some(if table.is_empty() {
                        k.to_owned()
                    } else {
                        format!("{table}.{k}")
                    })
                }
                None if table.is_empty() => None,
                None => Some(table.clone()),
            };
        }
    }
    (Some(line_no), key)
}

/// The line without a trailing `# comment` (a `#` inside a string is kept;
/// good enough for locating keys).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

impl Config {
    /// Reads, parses and checks `file`, including that the files it names
    /// exist and can be read.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read configuration file: {e}"),
        })?;
        let config = Self::parse(&text, file)?;
        config.check_files(file)?;
        Ok(config)
    }

    /// Parses and checks `text` as if read from `file` (used for messages and
    /// to resolve relative paths); does not touch the files it names.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        config.check_tenants(file)?;
        config.check_devices(file)?;
        config.check_security(file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        for path in [
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.tls.tenant_ca,
            &mut config.store.path,
        ] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        if let Some(path) = &mut config.soft.root_key_file
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
        if let Some(path) = &mut config.audit.key_file
            && path.is_relative()
        {
            *path = base.join(&*path);
        }
        if let Some(admin) = &mut config.admin {
            if admin.admin_ca.is_relative() {
                admin.admin_ca = base.join(&admin.admin_ca);
            }
            if let Some(path) = &mut admin.tenant_ca_key
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        for device in &mut config.devices {
            if device.module.is_relative() {
                device.module = base.join(&device.module);
            }
            if let Some(path) = &mut device.pin_file
                && path.is_relative()
            {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }

    /// argon2 accepts the parameters; one root key source at most.
    fn check_security(&self, file: &Path) -> Result<(), ConfigError> {
        self.security
            .policy()
            .pin_hash
            .check()
            .map_err(|e| ConfigError::new(file, "security", e))?;
        if self.soft.root_key_file.is_some() && self.soft.root_key_env.is_some() {
            return Err(ConfigError::new(
                file,
                "soft",
                "give root_key_file or root_key_env, not both",
            ));
        }
        Ok(())
    }

    /// Devices: unique names, one token selector and one PIN source each;
    /// every `pkcs11` slot names a known device, no device holds two
    /// partitions, and other slots name none.
    fn check_devices(&self, file: &Path) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (d, device) in self.devices.iter().enumerate() {
            let key = |field: &str| format!("devices[{d}].{field}");
            if !names.insert(&device.name) {
                return Err(ConfigError::new(
                    file,
                    key("name"),
                    format!("device {:?} is configured twice", device.name.as_str()),
                ));
            }
            match (&device.token_label, &device.token_serial) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        file,
                        key("token_label"),
                        "give token_label or token_serial, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        file,
                        key("token_label"),
                        "the device's token is missing: give token_label or token_serial",
                    ));
                }
                _ => {}
            }
            match (&device.pin_env, &device.pin_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        file,
                        key("pin_env"),
                        "give pin_env or pin_file, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        file,
                        key("pin_env"),
                        "the device's user PIN source is missing: give pin_env (an environment \
                         variable) or pin_file (a file); the PIN itself never goes in this file",
                    ));
                }
                _ => {}
            }
        }
        let mut used = HashSet::new();
        for (t, tenant) in self.tenants.iter().enumerate() {
            for (s, slot) in tenant.slots.iter().enumerate() {
                let key = format!("tenants[{t}].slots[{s}].device");
                match (slot.driver, &slot.device) {
                    (DriverKind::Pkcs11, None) => {
                        return Err(ConfigError::new(
                            file,
                            key,
                            "a slot with driver = \"pkcs11\" needs device = \"NAME\" of a [[devices]] entry",
                        ));
                    }
                    (DriverKind::Pkcs11, Some(primary)) => {
                        for (r, name) in std::iter::once(primary).chain(&slot.replicas).enumerate()
                        {
                            let key = if r == 0 {
                                key.clone()
                            } else {
                                format!("tenants[{t}].slots[{s}].replicas[{}]", r - 1)
                            };
                            if !names.contains(name) {
                                return Err(ConfigError::new(
                                    file,
                                    key,
                                    format!(
                                        "unknown device {:?}: no [[devices]] entry has this name",
                                        name.as_str()
                                    ),
                                ));
                            }
                            if !used.insert(name) {
                                return Err(ConfigError::new(
                                    file,
                                    key,
                                    format!(
                                        "device {:?} already holds another partition (one partition per device)",
                                        name.as_str()
                                    ),
                                ));
                            }
                        }
                    }
                    (DriverKind::Soft, Some(_)) => {
                        return Err(ConfigError::new(
                            file,
                            key,
                            "only slots with driver = \"pkcs11\" name a device",
                        ));
                    }
                    (DriverKind::Soft, None) if slot.replicas.is_empty() => {}
                    (_, _) => {
                        return Err(ConfigError::new(
                            file,
                            format!("tenants[{t}].slots[{s}].replicas"),
                            "replicas are devices holding copies of a pkcs11 slot's device: give device = \"NAME\" too, and driver = \"pkcs11\"",
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Unique tenant names, slot ids per tenant, partition names and serials
    /// across the server.
    fn check_tenants(&self, file: &Path) -> Result<(), ConfigError> {
        let mut tenants = HashSet::new();
        let mut partitions = HashSet::new();
        let mut serials = HashSet::new();
        for (t, tenant) in self.tenants.iter().enumerate() {
            if !tenants.insert(&tenant.name) {
                return Err(ConfigError::new(
                    file,
                    format!("tenants[{t}].name"),
                    format!("tenant {:?} is configured twice", tenant.name.as_str()),
                ));
            }
            let mut ids = BTreeSet::new();
            for (s, slot) in tenant.slots.iter().enumerate() {
                let key = |field: &str| format!("tenants[{t}].slots[{s}].{field}");
                if !ids.insert(slot.id) {
                    return Err(ConfigError::new(
                        file,
                        key("id"),
                        format!(
                            "slot id {} is used twice by tenant {:?}",
                            slot.id,
                            tenant.name.as_str()
                        ),
                    ));
                }
                if !partitions.insert(&slot.partition) {
                    return Err(ConfigError::new(
                        file,
                        key("partition"),
                        format!(
                            "partition {:?} is used twice (partition names are unique across the server)",
                            slot.partition.as_str()
                        ),
                    ));
                }
                if !serials.insert(&slot.serial) {
                    return Err(ConfigError::new(
                        file,
                        key("serial"),
                        format!("token serial {:?} is used twice", slot.serial.as_str()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The TLS files exist and can be opened; the store's directory exists.
    fn check_files(&self, file: &Path) -> Result<(), ConfigError> {
        for (key, path) in [
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
            ("tls.tenant_ca", &self.tls.tenant_ca),
        ] {
            check_readable_file(path)
                .map_err(|e| ConfigError::new(file, key, format!("{}: {e}", path.display())))?;
        }
        if let Some(admin) = &self.admin {
            let key = admin
                .tenant_ca_key
                .iter()
                .map(|p| ("admin.tenant_ca_key", p));
            for (key, path) in [("admin.admin_ca", &admin.admin_ca)].into_iter().chain(key) {
                check_readable_file(path)
                    .map_err(|e| ConfigError::new(file, key, format!("{}: {e}", path.display())))?;
            }
        }
        let store = &self.store.path;
        if store.is_dir() {
            return Err(ConfigError::new(
                file,
                "store.path",
                format!("{} is a directory, not a database file", store.display()),
            ));
        }
        match store.parent() {
            Some(dir) if dir.is_dir() => Ok(()),
            _ => Err(ConfigError::new(
                file,
                "store.path",
                format!(
                    "{}: the directory for the database does not exist",
                    store.display()
                ),
            )),
        }
    }
}

fn check_readable_file(path: &Path) -> Result<(), String> {
    let handle = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let meta = handle
        .metadata()
        .map_err(|e| format!("cannot read metadata: {e}"))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err("not a regular file".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:7700"   # comment
log_level = "info"

[tls]
cert = "server.pem"
key = "/abs/server-key.pem"
tenant_ca = "/abs/ca.pem"

[store]
path = "/abs/hsmlink.db"

[[tenants]]
name = "demo"

[[tenants.slots]]
id = 0
partition = "demo-p0"
driver = "soft"
serial = "9f3c2a7e51d04b86"

[[tenants.slots]]
id = 1
partition = "demo-p1"
driver = "soft"
serial = "0000000000000001"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/hsmlink/server.toml"))
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("accepted a bad configuration"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_good_file_parses_with_defaults_and_absolute_paths() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.server.listen.as_str(), "127.0.0.1:7700");
        assert_eq!(config.server.tls_min_version, TlsMinVersion::Tls13);
        assert_eq!(config.server.max_in_flight_per_connection.get(), 64);
        assert_eq!(config.tls.cert, Path::new("/etc/hsmlink/server.pem"));
        assert_eq!(config.tls.key, Path::new("/abs/server-key.pem"));
        assert_eq!(config.tenants[0].slots.len(), 2);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("log_level = \"info\"", "log_levle = \"info\"");
        let err = error(&text);
        assert!(
            err.starts_with("/etc/hsmlink/server.toml:4: server.log_levle: "),
            "{err}"
        );
        assert!(err.contains("unknown field `log_levle`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn unknown_key_in_an_array_table() {
        let text = GOOD.replace(
            "driver = \"soft\"\nserial = \"9f3c",
            "colour = 1\ndriver = \"soft\"\nserial = \"9f3c",
        );
        let err = error(&text);
        assert!(err.contains("tenants.slots.colour"), "{err}");
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn missing_key_is_named() {
        let text = GOOD.replace("tenant_ca = \"/abs/ca.pem\"\n", "");
        let err = error(&text);
        assert!(err.contains("missing field `tenant_ca`"), "{err}");
        assert!(err.contains(": tls: "), "{err}");
    }

    #[test]
    fn unknown_driver_is_a_clear_error() {
        let text = GOOD.replacen("driver = \"soft\"", "driver = \"thales\"", 1);
        let err = error(&text);
        assert!(err.contains("tenants.slots.driver"), "{err}");
        assert!(err.contains("unknown variant `thales`"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, key, what) in [
            (
                "name = \"demo\"",
                "name = \"Demo\"",
                "tenants.name",
                "invalid tenant name",
            ),
            (
                "listen = \"127.0.0.1:7700\"",
                "listen = \"localhost\"",
                "server.listen",
                "HOST:PORT",
            ),
            (
                "log_level = \"info\"",
                "log_level = \"info,[\"",
                "server.log_level",
                "invalid log filter",
            ),
            (
                "log_level = \"info\"",
                "tls_min_version = \"1.1\"",
                "server.tls_min_version",
                "unknown variant",
            ),
            (
                "log_level = \"info\"",
                "handshake_timeout_ms = 0",
                "server.handshake_timeout_ms",
                "nonzero",
            ),
            (
                "serial = \"9f3c2a7e51d04b86\"",
                "serial = \"\"",
                "tenants.slots.serial",
                "serial",
            ),
        ] {
            let err = error(&GOOD.replacen(from, to, 1));
            assert!(err.contains(key) && err.contains(what), "{to}: {err}");
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let err = error(&GOOD.replace("id = 1", "id = 0"));
        assert!(
            err.contains("tenants[0].slots[1].id") && err.contains("twice"),
            "{err}"
        );
        let err = error(&GOOD.replace("demo-p1", "demo-p0"));
        assert!(err.contains("tenants[0].slots[1].partition"), "{err}");
        let twice = format!("{GOOD}\n[[tenants]]\nname = \"demo\"\n");
        let err = error(&twice);
        assert!(err.contains("tenants[1].name"), "{err}");
    }

    #[test]
    fn missing_files_name_the_key_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("server.toml");
        std::fs::write(dir.path().join("server.pem"), "x").unwrap();
        std::fs::write(&file, GOOD).unwrap();
        let err = Config::load(&file).unwrap_err().to_string();
        assert!(err.starts_with(&file.display().to_string()), "{err}");
        assert!(
            err.contains(": tls.key: /abs/server-key.pem: cannot open"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn missing_config_file() {
        let err = Config::load(Path::new("/nonexistent/server.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/nonexistent/server.toml: cannot read"),
            "{err}"
        );
    }

    const DEVICE: &str = r#"
[[devices]]
name = "hsm0"
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "dev0"
pin_env = "HSMLINK_DEV0_PIN"
"#;

    fn with_pkcs11_slot(devices: &str) -> String {
        let slot = "\n[[tenants.slots]]\nid = 2\npartition = \"demo-p2\"\ndriver = \"pkcs11\"\nserial = \"0000000000000002\"\ndevice = \"hsm0\"\n";
        format!("{GOOD}{slot}{devices}")
    }

    #[test]
    fn a_pkcs11_slot_on_a_device() {
        let config = parse(&with_pkcs11_slot(DEVICE)).unwrap();
        let device = &config.devices[0];
        assert_eq!(device.name.as_str(), "hsm0");
        assert_eq!(device.max_sessions.get(), 8);
        assert_eq!(device.session_wait(), Duration::from_secs(5));
        assert_eq!(device.token(), TokenSelector::Label("dev0".to_owned()));
        assert_eq!(
            device.pin_source(),
            PinSource::Env("HSMLINK_DEV0_PIN".to_owned())
        );
        let slot = &config.tenants[0].slots[2];
        assert_eq!(slot.driver, DriverKind::Pkcs11);
        assert_eq!(slot.device.as_ref().map(|d| d.as_str()), Some("hsm0"));
        // Relative paths are relative to the file.
        let text = with_pkcs11_slot(
            &DEVICE
                .replace("pin_env = \"HSMLINK_DEV0_PIN\"", "pin_file = \"dev0.pin\"")
                .replace("/usr/lib/softhsm/", ""),
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.devices[0].pin_source(),
            PinSource::File(PathBuf::from("/etc/hsmlink/dev0.pin"))
        );
        assert_eq!(
            config.devices[0].module,
            Path::new("/etc/hsmlink/libsofthsm2.so")
        );
    }

    #[test]
    fn secure_templates_strict_by_default_relaxed_per_slot() {
        let config = parse(GOOD).unwrap();
        assert!(
            config
                .tenants
                .iter()
                .flat_map(|t| &t.slots)
                .all(|s| s.secure_templates == SecureTemplates::Strict)
        );
        let slot = "\n[[tenants.slots]]\nid = 2\npartition = \"demo-p2\"\ndriver = \"soft\"\nserial = \"0000000000000002\"\nsecure_templates = \"relaxed\"\n";
        let config = parse(&format!("{GOOD}{slot}")).unwrap();
        assert_eq!(
            config.tenants[0].slots[2].secure_templates,
            SecureTemplates::Relaxed
        );
        let bad = slot.replace("relaxed", "off");
        let e = parse(&format!("{GOOD}{bad}")).unwrap_err();
        assert!(e.to_string().contains("secure_templates"), "{e}");
    }

    #[test]
    fn device_errors_are_clear() {
        for (devices, key, what) in [
            ("", "tenants[0].slots[2].device", "unknown device \"hsm0\""),
            (
                &DEVICE.replace("pin_env = \"HSMLINK_DEV0_PIN\"\n", ""),
                "devices[0].pin_env",
                "PIN source is missing",
            ),
            (
                &DEVICE.replace("token_label = \"dev0\"\n", ""),
                "devices[0].token_label",
                "token is missing",
            ),
            (
                &DEVICE.replace(
                    "token_label = \"dev0\"",
                    "token_label = \"a\"\ntoken_serial = \"b\"",
                ),
                "devices[0].token_label",
                "not both",
            ),
            (
                &format!("{DEVICE}{DEVICE}"),
                "devices[1].name",
                "configured twice",
            ),
            (
                &DEVICE.replace("pin_env", "pin"),
                "devices.pin",
                "unknown field `pin`",
            ),
            (
                &DEVICE.replace(
                    "token_label = \"dev0\"",
                    "token_label = \"dev0\"\nmax_sessions = 0",
                ),
                "devices.max_sessions",
                "nonzero",
            ),
        ] {
            let err = error(&with_pkcs11_slot(devices));
            assert!(err.contains(key) && err.contains(what), "{devices}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // A pkcs11 slot without a device, a soft slot with one, two
        // partitions on one device.
        let err = error(&with_pkcs11_slot(DEVICE).replace("device = \"hsm0\"\n", ""));
        assert!(
            err.contains("tenants[0].slots[2].device") && err.contains("needs device"),
            "{err}"
        );
        let soft = GOOD.replacen(
            "serial = \"9f3c2a7e51d04b86\"",
            "serial = \"9f3c2a7e51d04b86\"\ndevice = \"hsm0\"",
            1,
        );
        let err = error(&format!("{soft}{DEVICE}"));
        assert!(
            err.contains("tenants[0].slots[0].device") && err.contains("only slots"),
            "{err}"
        );
        let twice = format!(
            "{}\n[[tenants.slots]]\nid = 3\npartition = \"demo-p3\"\ndriver = \"pkcs11\"\nserial = \"0000000000000003\"\ndevice = \"hsm0\"\n{DEVICE}",
            with_pkcs11_slot("")
        );
        let err = error(&twice);
        assert!(
            err.contains("tenants[0].slots[3].device") && err.contains("already holds"),
            "{err}"
        );
    }

    #[test]
    fn audit_metering_and_login_limits() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.security.login_limits(), LoginLimits::DEFAULT);
        assert!(config.security.login_limit_warnings().is_empty());
        let s = config.audit_settings();
        assert_eq!(s.key_file, Path::new("/abs/audit.key"));
        assert_eq!(
            (s.retention_days, s.sign_every_records, s.fsync),
            (None, 1000, true)
        );
        let text = format!(
            "{GOOD}\n[security]\nlogin_idle_timeout_s = 9000\nlogin_max_lifetime_s = 60\n\
             [audit]\nkey_file = \"keys/audit.key\"\nretention_days = 400\n\
             durability = \"os\"\n[metering]\nflush_interval_s = 5\n"
        );
        let config = parse(&text).unwrap();
        let s = config.audit_settings();
        assert_eq!(s.key_file, Path::new("/etc/hsmlink/keys/audit.key"));
        assert_eq!((s.retention_days, s.fsync), (Some(400), false));
        assert_eq!(s.metering_flush, Duration::from_secs(5));
        assert_eq!(
            config.security.login_limits().lifetime,
            Duration::from_secs(60)
        );
        assert_eq!(config.security.login_limit_warnings().len(), 1);
        assert!(error(&format!("{GOOD}\n[audit]\nsign_every_records = 0\n")).contains("audit"));
        assert!(
            error(&format!("{GOOD}\n[audit]\ndurability = \"never\"\n")).contains("durability")
        );
    }

    #[test]
    fn listen_addresses() {
        let v6 = ListenAddr::parse("[::1]:7700").unwrap();
        assert_eq!((v6.host(), v6.port()), ("::1", 7700));
        let name = ListenAddr::parse("hsm.example:443").unwrap();
        assert_eq!((name.host(), name.port()), ("hsm.example", 443));
        assert!(ListenAddr::parse("::1:7700").is_err());
        assert!(ListenAddr::parse(":7700").is_err());
        assert!(ListenAddr::parse("host:99999").is_err());
    }

    #[test]
    fn connection_caps_and_the_pin_throttle_have_defaults_and_parse() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.server.max_connections.get(), 4096);
        assert_eq!(config.server.max_connections_per_tenant.get(), 512);
        assert_eq!(
            config.security.login_throttle(),
            crate::ratelimit::ThrottleSettings::DEFAULT
        );
        let text = GOOD
            .replace(
                "log_level = \"info\"",
                "log_level = \"info\"\nmax_connections = 10\nmax_connections_per_tenant = 2",
            )
            .replace(
                "[tls]",
                "[security]\nlogin_failures_per_source = 0\nlogin_failure_window_s = 5\n\
                 login_source_cooldown_s = 7\n\n[tls]",
            );
        let config = parse(&text).unwrap();
        assert_eq!(config.server.max_connections.get(), 10);
        assert_eq!(config.server.max_connections_per_tenant.get(), 2);
        let throttle = config.security.login_throttle();
        assert_eq!(throttle.max_failures, 0);
        assert_eq!(throttle.window, Duration::from_secs(5));
        assert_eq!(throttle.cooldown, Duration::from_secs(7));
        let zero = GOOD.replace(
            "log_level = \"info\"",
            "log_level = \"info\"\nmax_connections_per_tenant = 0",
        );
        assert!(error(&zero).contains("max_connections_per_tenant"));
    }
}
