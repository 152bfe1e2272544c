//! `client.toml`: where the servers are and which certificates to use.
//!
//! The path comes from `HSMLINK_CONF`, default `/etc/hsmlink/client.toml`.
//! Unknown keys are errors. Every problem becomes one line naming the file,
//! the key and what is wrong, e.g.
//! `configuration /etc/hsmlink/client.toml: key `servers`: missing`.
//! Relative certificate and log paths are taken relative to the directory of
//! the configuration file, not to the application's working directory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::log::Level;
use crate::profile::SmProfile;

/// Environment variable naming the configuration file.
pub const ENV_CONF: &str = "HSMLINK_CONF";
pub const DEFAULT_PATH: &str = "/etc/hsmlink/client.toml";

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;
const DEFAULT_IO_TIMEOUT_MS: u64 = 30_000;

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from, for messages.
    pub path: PathBuf,
    /// Tried in order.
    pub servers: Vec<ServerAddr>,
    /// Name to verify in the server certificate instead of each address's host.
    pub server_name: Option<String>,
    pub ca: PathBuf,
    /// The tenant's certificate and key.
    pub identity: Identity,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub log_level: Option<Level>,
    pub log_file: Option<PathBuf>,
    /// Another vendor's numbers for SM2/SM3/SM4, accepted besides hsmlink's.
    pub sm_profile: SmProfile,
}

/// Where the tenant's client certificate and key come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `cert` and `key`: PEM files.
    Pem { cert: PathBuf, key: PathBuf },
    /// `pkcs12`: one PKCS#12 file holding the key and its certificate chain,
    /// encrypted under a passphrase read from a file or the environment
    /// (never written in client.toml).
    Pkcs12 {
        file: PathBuf,
        passphrase: PassphraseSource,
    },
}

/// Where a PKCS#12 file's passphrase comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassphraseSource {
    /// `pkcs12_passphrase_file`: its contents, a trailing newline apart.
    File(PathBuf),
    /// `pkcs12_passphrase_env`: an environment variable of the application.
    Env(String),
}

/// One `HOST:PORT` of `servers` (`[v6addr]:PORT` for IPv6 literals).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    /// As written in the file, for messages.
    pub text: String,
    /// Without brackets.
    pub host: String,
    pub port: u16,
}

/// Why the configuration cannot be used; displays as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    path: PathBuf,
    key: Option<String>,
    problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    servers: Vec<String>,
    server_name: Option<String>,
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    pkcs12: Option<PathBuf>,
    pkcs12_passphrase_file: Option<PathBuf>,
    pkcs12_passphrase_env: Option<String>,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_io_timeout_ms")]
    io_timeout_ms: u64,
    log_level: Option<Level>,
    log_file: Option<PathBuf>,
    sm_profile: Option<String>,
}

fn default_connect_timeout_ms() -> u64 {
    DEFAULT_CONNECT_TIMEOUT_MS
}

fn default_io_timeout_ms() -> u64 {
    DEFAULT_IO_TIMEOUT_MS
}

/// The configuration file to read: `HSMLINK_CONF`, else the default path.
pub fn path() -> PathBuf {
    #[cfg(test)]
    if let Some(path) = test_override::get() {
        return path;
    }
    match std::env::var_os(ENV_CONF) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            key: None,
            problem: format!("cannot read the file: {e} (set {ENV_CONF} to use another file)"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the contents of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let error = |key: &str, problem: String| ConfigError::new(path, key, problem);

        if raw.servers.is_empty() {
            return Err(error("servers", "must name at least one HOST:PORT".into()));
        }
        let servers = raw
            .servers
            .iter()
            .map(|text| ServerAddr::parse(text).map_err(|problem| error("servers", problem)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(name) = &raw.server_name
            && name.trim().is_empty()
        {
            return Err(error("server_name", "must not be empty".into()));
        }
        let connect_timeout = timeout(raw.connect_timeout_ms)
            .map_err(|problem| error("connect_timeout_ms", problem))?;
        let io_timeout =
            timeout(raw.io_timeout_ms).map_err(|problem| error("io_timeout_ms", problem))?;

        let sm_profile = match raw.sm_profile.as_deref() {
            None => SmProfile::default(),
            Some(name) => SmProfile::named(name).ok_or_else(|| {
                error(
                    "sm_profile",
                    format!("{name:?} is not one of {}", SmProfile::names()),
                )
            })?,
        };

        let base = path.parent().unwrap_or(Path::new("/"));
        let resolve = |file: PathBuf| {
            if file.is_absolute() {
                file
            } else {
                base.join(file)
            }
        };
        let named = |key: &str, file: Option<PathBuf>| match file {
            Some(file) if file.as_os_str().is_empty() => Err(error(key, "must name a file".into())),
            other => Ok(other),
        };
        if raw.ca.as_os_str().is_empty() {
            return Err(error("ca", "must name a file".into()));
        }
        let identity = match (
            named("cert", raw.cert)?,
            named("key", raw.key)?,
            named("pkcs12", raw.pkcs12)?,
        ) {
            (Some(cert), Some(key), None) => Identity::Pem {
                cert: resolve(cert),
                key: resolve(key),
            },
            (None, None, Some(file)) => Identity::Pkcs12 {
                file: resolve(file),
                passphrase: match (
                    named("pkcs12_passphrase_file", raw.pkcs12_passphrase_file)?,
                    raw.pkcs12_passphrase_env,
                ) {
                    (Some(file), None) => PassphraseSource::File(resolve(file)),
                    (None, Some(name)) if !name.is_empty() => PassphraseSource::Env(name),
                    _ => {
                        return Err(error(
                            "pkcs12",
                            "give the passphrase's source: pkcs12_passphrase_file or \
                             pkcs12_passphrase_env (one of the two; never the passphrase itself)"
                                .into(),
                        ));
                    }
                },
            },
            (_, _, Some(_)) => {
                return Err(error(
                    "pkcs12",
                    "holds the certificate and the key: give it instead of cert and key".into(),
                ));
            }
            (None, _, None) => {
                return Err(error(
                    "cert",
                    "missing: give cert and key, or pkcs12".into(),
                ));
            }
            (Some(_), None, None) => {
                return Err(error("key", "missing: cert needs its key".into()));
            }
        };
        Ok(Self {
            path: path.to_owned(),
            servers,
            server_name: raw.server_name,
            ca: resolve(raw.ca),
            identity,
            connect_timeout,
            io_timeout,
            log_level: raw.log_level,
            log_file: raw.log_file.map(resolve),
            sm_profile,
        })
    }
}

impl ServerAddr {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not HOST:PORT ({why})");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| bad("an IPv6 address is written [ADDR]:PORT"))?;
            (host, port)
        } else {
            let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
            if host.contains(':') {
                return Err(bad("write an IPv6 address as [ADDR]:PORT"));
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(bad("the port must be a number from 1 to 65535")),
        };
        Ok(Self {
            text: text.to_owned(),
            host: host.to_owned(),
            port,
        })
    }
}

impl ConfigError {
    pub fn new(path: &Path, key: &str, problem: String) -> Self {
        Self {
            path: path.to_owned(),
            key: Some(key.to_owned()),
            problem,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration {}: ", self.path.display())?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn timeout(ms: u64) -> Result<Duration, String> {
    // Zero would mean "no timeout" to some socket calls and an error to others.
    if ms == 0 {
        return Err("must be at least 1 (milliseconds)".into());
    }
    Ok(Duration::from_millis(ms))
}

/// Turns a toml/serde error into one line: the key it concerns (named by
/// serde for missing and unknown fields, found at the error's position
/// otherwise) and the message without toml's multi-line snippet.
fn toml_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', " ");
    let line = error
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let key = if message.starts_with("missing field") || message.starts_with("unknown field") {
        backticked(&message)
    } else {
        error.span().and_then(|span| key_at(text, span.start))
    };
    let problem = match (key.is_some(), message.strip_prefix("missing field ")) {
        (true, Some(_)) => "missing".to_owned(),
        _ => match line {
            Some(line) => format!("{message} (line {line})"),
            None => message,
        },
    };
    ConfigError {
        path: path.to_owned(),
        key,
        problem,
    }
}

/// The first `backticked` word of a serde message.
fn backticked(message: &str) -> Option<String> {
    let rest = message.split_once('`')?.1;
    Some(rest.split_once('`')?.0.to_owned())
}

/// The key of the `key = value` line containing byte offset `at`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_owned())
}

#[cfg(test)]
pub mod test_override {
    //! Unit tests point the library at their configuration here rather than
    //! by mutating the process environment (unsound with other threads).
    use std::path::PathBuf;

    use parking_lot::Mutex;

    static PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

    pub fn set(path: Option<PathBuf>) {
        *PATH.lock() = path;
    }

    pub fn get() -> Option<PathBuf> {
        PATH.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is a failed test

    use super::*;

    const GOOD: &str = r#"
# hsmlink PKCS#11 module configuration
servers = ["127.0.0.1:7700", "[::1]:7701", "hsm.example:7702"]
ca = "/abs/ca.pem"
cert = "demo.pem"
key = "/abs/demo-key.pem"
log_level = "debug"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("/etc/hsmlink/client.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn good_file_with_defaults() {
        let config = parse(GOOD).unwrap();
        assert_eq!(config.servers.len(), 3);
        assert_eq!(config.servers[0].host, "127.0.0.1");
        assert_eq!(config.servers[1].host, "::1");
        assert_eq!(config.servers[1].port, 7701);
        assert_eq!(config.servers[2].host, "hsm.example");
        assert_eq!(config.ca, PathBuf::from("/abs/ca.pem"));
        // Relative to the configuration file's directory.
        assert_eq!(
            config.identity,
            Identity::Pem {
                cert: PathBuf::from("/etc/hsmlink/demo.pem"),
                key: PathBuf::from("/abs/demo-key.pem"),
            }
        );
        assert_eq!(config.connect_timeout, Duration::from_millis(3000));
        assert_eq!(config.io_timeout, Duration::from_millis(30000));
        assert_eq!(config.log_level, Some(Level::Debug));
        assert_eq!(config.server_name, None);
        assert_eq!(config.log_file, None);
    }

    #[test]
    fn sm_profile_names_a_vendor_or_is_a_clear_error() {
        assert_eq!(parse(GOOD).unwrap().sm_profile, SmProfile::default());
        let config = parse(&format!("{GOOD}sm_profile = \"sansec\"\n")).unwrap();
        assert_eq!(config.sm_profile.name, "sansec");
        let e = parse(&format!("{GOOD}sm_profile = \"westone\"\n")).unwrap_err();
        assert_eq!(
            e,
            "configuration /etc/hsmlink/client.toml: key `sm_profile`: \"westone\" is not one \
             of hsmlink, sansec, tass, luna"
        );
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = parse(&format!("{GOOD}\nretries = 3\n")).unwrap_err();
        assert!(
            e.starts_with("configuration /etc/hsmlink/client.toml: key `retries`: "),
            "{e}"
        );
        assert!(e.contains("unknown field"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn missing_key_is_an_error() {
        let text = GOOD.replace("ca = \"/abs/ca.pem\"\n", "");
        let e = parse(&text).unwrap_err();
        assert_eq!(
            e,
            "configuration /etc/hsmlink/client.toml: key `ca`: missing"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse(&format!("{GOOD}\nio_timeout_ms = \"soon\"\n")).unwrap_err();
        assert!(e.contains("key `io_timeout_ms`: "), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse(&GOOD.replace("\"debug\"", "\"verbose\"")).unwrap_err();
        assert!(e.contains("key `log_level`: "), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = parse(&GOOD.replace("127.0.0.1:7700", "127.0.0.1")).unwrap_err();
        assert!(
            e.contains("key `servers`: \"127.0.0.1\" is not HOST:PORT"),
            "{e}"
        );
        let e = parse(&GOOD.replace("127.0.0.1:7700", "::1:7700")).unwrap_err();
        assert!(e.contains("key `servers`: "), "{e}");
        let e = parse(&format!("{GOOD}\nconnect_timeout_ms = 0\n")).unwrap_err();
        assert!(
            e.contains("key `connect_timeout_ms`: must be at least 1"),
            "{e}"
        );
        let e = parse("servers = []\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n").unwrap_err();
        assert!(e.contains("key `servers`: must name at least one"), "{e}");
    }

    #[test]
    fn the_identity_is_pem_files_or_one_pkcs12_file_with_a_passphrase_source() {
        let pem = "servers = [\"h:1\"]\nca = \"ca.pem\"\n";
        let config = parse(&format!(
            "{pem}pkcs12 = \"me.p12\"\npkcs12_passphrase_env = \"HSMLINK_P12\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.identity,
            Identity::Pkcs12 {
                file: PathBuf::from("/etc/hsmlink/me.p12"),
                passphrase: PassphraseSource::Env("HSMLINK_P12".into()),
            }
        );
        let config = parse(&format!(
            "{pem}pkcs12 = \"me.p12\"\npkcs12_passphrase_file = \"p12.pass\"\n"
        ))
        .unwrap();
        assert!(matches!(
            config.identity,
            Identity::Pkcs12 { passphrase: PassphraseSource::File(ref f), .. }
                if f == Path::new("/etc/hsmlink/p12.pass")
        ));
        for (text, want) in [
            (
                "pkcs12 = \"me.p12\"\n",
                "key `pkcs12`: give the passphrase's source",
            ),
            (
                "pkcs12 = \"me.p12\"\npkcs12_passphrase_env = \"A\"\npkcs12_passphrase_file = \"f\"\n",
                "key `pkcs12`: give the passphrase's source",
            ),
            (
                "pkcs12 = \"me.p12\"\npkcs12_passphrase_env = \"A\"\ncert = \"c\"\nkey = \"k\"\n",
                "key `pkcs12`: holds the certificate and the key",
            ),
            ("", "key `cert`: missing: give cert and key, or pkcs12"),
            ("cert = \"c\"\n", "key `key`: missing"),
            ("cert = \"\"\nkey = \"k\"\n", "key `cert`: must name a file"),
        ] {
            let e = parse(&format!("{pem}{text}")).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn syntax_error_is_one_line_with_the_file() {
        let e = parse("servers = [\"127.0.0.1:7700\"\nca = ").unwrap_err();
        assert!(
            e.starts_with("configuration /etc/hsmlink/client.toml: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn unreadable_file_names_the_file() {
        let e = Config::load(Path::new("/nonexistent/hsmlink/client.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("configuration /nonexistent/hsmlink/client.toml: cannot read the file: "),
            "{e}"
        );
        assert!(e.contains(ENV_CONF), "{e}");
    }
}
