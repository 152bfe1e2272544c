//! Test harness: real `hsmlink-server` processes from fresh `init`
//! directories, and the real `libhsmlink_pkcs11.so` loaded through the
//! `cryptoki` crate.
//!
//! The binaries are taken from the profile directory this test executable was
//! built into (`target/<profile>/`), so `cargo build --release` followed by
//! `cargo test --release` tests exactly what was built. The README's test
//! command does both.
#![allow(dead_code)] // each test file uses part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a failed test

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use rcgen::date_time_ymd;
use time::OffsetDateTime;

/// `target/<profile>` of this build.
pub fn profile_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HSMLINK_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

fn artifact(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (the README's test command runs `cargo build --release --workspace` before the tests)",
        path.display()
    );
    path
}

pub fn server_bin() -> PathBuf {
    artifact("hsmlink-server")
}

pub fn module_path() -> PathBuf {
    artifact("libhsmlink_pkcs11.so")
}

/// The workspace root, for scripts under `conformance/`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

/// A loopback port nobody listens on at the moment of asking.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// A deployment written by `hsmlink-server init` into a temporary directory,
/// and (once started) its server process.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The admin API's address: a free port of its own (init's default,
    /// the tenant port + 1, may be taken by another test's connection).
    pub admin_addr: SocketAddr,
    server: Option<Child>,
}

impl Deployment {
    /// `hsmlink-server init` into a fresh directory, on a free loopback port.
    pub fn init() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("socket address");
        let admin_port = std::iter::repeat_with(free_port)
            .find(|p| *p != port)
            .expect("a second free port");
        let admin_addr: SocketAddr = format!("127.0.0.1:{admin_port}")
            .parse()
            .expect("socket address");
        let out = Command::new(server_bin())
            .args(["init", "--dir"])
            .arg(dir.path())
            .args(["--listen", &addr.to_string()])
            .args(["--admin-listen", &admin_addr.to_string()])
            .output()
            .expect("run hsmlink-server init");
        assert!(
            out.status.success(),
            "hsmlink-server init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir,
            addr,
            admin_addr,
            server: None,
        }
    }

    /// `init` and `run`, waiting until the server accepts connections.
    pub fn start() -> Self {
        let mut deployment = Self::init();
        deployment.run_server();
        deployment
    }

    /// [`Self::start`] with the tenant's partition on `secure_templates =
    /// "relaxed"`: for tests of a mechanism's own behaviour (wrapping under
    /// a key the caller made) that the strict rules refuse before it runs.
    pub fn start_relaxed() -> Self {
        let mut deployment = Self::init();
        let path = deployment.path("server.toml");
        let text = std::fs::read_to_string(&path).expect("server.toml");
        assert!(text.contains("driver = \"soft\""), "{text}");
        std::fs::write(
            &path,
            text.replace(
                "driver = \"soft\"",
                "driver = \"soft\"\nsecure_templates = \"relaxed\"",
            ),
        )
        .expect("write server.toml");
        deployment.run_server();
        deployment
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn client_config(&self) -> PathBuf {
        self.path("client.toml")
    }

    /// The environment that points the module at this deployment.
    pub fn module_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![("HSMLINK_CONF", self.client_config().into_os_string())]
    }

    pub fn run_server(&mut self) {
        let log = std::fs::File::create(self.path("server.log")).expect("server log file");
        let child = Command::new(server_bin())
            .args(["run", "--config"])
            .arg(self.path("server.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn hsmlink-server run");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "hsmlink-server exited with {status}:\n{}",
                    self.server_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hsmlink-server did not listen on {} within 20 s:\n{}",
                self.addr,
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for the exit status (graceful shutdown).
    /// The running server's process id.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    pub fn stop_server(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.server.take()?;
        // SIGTERM through kill(1): the tests crate keeps no unsafe code.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Adds tenant `name` with one soft slot (id 0) to server.toml and
    /// issues its client certificate from the deployment's CA; returns the
    /// path of a client.toml for it. Call before the server starts.
    pub fn add_tenant(&self, name: &str) -> PathBuf {
        let mut config = std::fs::read_to_string(self.path("server.toml")).expect("server.toml");
        let serial: String = format!("{name}0000000000000000").chars().take(16).collect();
        config.push_str(&format!(
            "\n[[tenants]]\nname = \"{name}\"\n\n[[tenants.slots]]\nid = 0\npartition = \"{name}-p0\"\ndriver = \"soft\"\nserial = \"{serial}\"\n"
        ));
        std::fs::write(self.path("server.toml"), config).expect("write server.toml");
        let (cert, key) = self.issue_tenant_certificate(name, name, valid());
        self.client_config_with(&format!("{name}.toml"), &cert, &key)
    }

    /// A client certificate for `tenant` from the deployment's own CA, made
    /// by `init`'s issuing code, written as `FILE.pem` and `FILE-key.pem`.
    pub fn issue_tenant_certificate(
        &self,
        file: &str,
        tenant: &str,
        (not_before, not_after): Validity,
    ) -> (PathBuf, PathBuf) {
        let ca = std::fs::read_to_string(self.path("ca.pem")).expect("ca.pem");
        let ca_key = std::fs::read_to_string(self.path("ca-key.pem")).expect("ca-key.pem");
        let issued = hsmlink_server::init::issue_tenant_certificate(
            &ca, &ca_key, tenant, not_before, not_after,
        )
        .expect("issue a tenant certificate");
        write_certified_key(self.dir.path(), file, &issued)
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// Writes a client.toml beside the deployment's own, with other
    /// certificate files, and returns its path.
    pub fn client_config_with(&self, name: &str, cert: &Path, key: &Path) -> PathBuf {
        let original = std::fs::read_to_string(self.client_config()).expect("client.toml");
        let mut text = String::new();
        for line in original.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("cert ") || trimmed.starts_with("cert=") {
                text.push_str(&format!("cert = {:?}\n", cert.display().to_string()));
            } else if trimmed.starts_with("key ") || trimmed.starts_with("key=") {
                text.push_str(&format!("key = {:?}\n", key.display().to_string()));
            } else if trimmed.starts_with("io_timeout_ms")
                || trimmed.starts_with("connect_timeout_ms")
            {
                // Short timeouts: a refused client must fail fast.
                let key = trimmed.split('=').next().unwrap_or_default().trim();
                text.push_str(&format!("{key} = 3000\n"));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        let path = self.path(name);
        std::fs::write(&path, text).expect("write client config");
        path
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True inside the child process started by [`run_in_child`].
///
/// The module, like every PKCS#11 library, has one global state per process
/// and reads `HSMLINK_CONF` at `C_Initialize`. Each test that loads it runs
/// its PKCS#11 part in a child process (this test executable, re-executed for
/// the one test, with the environment set): tests stay independent and
/// parallel, and nobody changes the environment of a running process.
///
/// ```ignore
/// #[test]
/// fn something() {
///     if in_child() {
///         let pkcs11 = load_module();
///         /* assertions */
///         return;
///     }
///     let deployment = Deployment::start();
///     run_in_child("something", &deployment.module_env());
/// }
/// ```
pub fn in_child() -> bool {
    std::env::var_os("HSMLINK_TEST_CHILD").is_some()
}

/// The command that re-runs test `test_name` in a child process with `env`
/// (stdin closed); [`run_in_child`] runs it to the end, a test that must
/// act while the child runs spawns it.
pub fn child_command(test_name: &str, env: &[(&str, std::ffi::OsString)]) -> Command {
    let exe = std::env::current_exe().expect("test executable path");
    let mut command = Command::new(exe);
    command
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HSMLINK_TEST_CHILD", test_name)
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Fails with the child's output unless child test `test_name` passed;
/// returns its stderr.
pub fn assert_child_passed(test_name: &str, out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child test {test_name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stderr.into_owned()
}

/// Re-runs test `test_name` in a child process with `env`; fails with the
/// child's output unless it passed.
pub fn run_in_child(test_name: &str, env: &[(&str, std::ffi::OsString)]) -> String {
    let out = child_command(test_name, env)
        .output()
        .expect("re-run the test executable");
    assert_child_passed(test_name, &out)
}

/// DER of the prime256v1 OID, the `CKA_EC_PARAMS` of a P-256 key.
pub const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A token P-256 key pair whose private key is private and signs; returns
/// the private key.
pub fn p256_token_signing_key(
    session: &cryptoki::session::Session,
) -> cryptoki::object::ObjectHandle {
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::Attribute;
    let (_, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Token(true),
            ],
            &[
                Attribute::Sign(true),
                Attribute::Token(true),
                Attribute::Private(true),
            ],
        )
        .unwrap();
    private
}

/// The real .so, loaded and initialised (it reads `HSMLINK_CONF` itself).
pub fn load_module() -> Pkcs11 {
    let pkcs11 = Pkcs11::new(module_path()).expect("load libhsmlink_pkcs11.so");
    pkcs11
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    pkcs11
}

/// Runs `f` on another thread and fails if it takes longer than `limit`:
/// a refused client must get an error, never hang.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("call did not return within {limit:?}"))
}

/// Validity of a certificate: (not before, not after).
pub type Validity = (OffsetDateTime, OffsetDateTime);

/// Valid from 2020 to 2040.
pub fn valid() -> Validity {
    (date_time_ymd(2020, 1, 1), date_time_ymd(2040, 1, 1))
}

/// Writes a certificate and its key as `DIR/FILE.pem`, `DIR/FILE-key.pem`.
pub fn write_certified_key(
    dir: &Path,
    file: &str,
    issued: &hsmlink_server::init::CertifiedKey,
) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{file}.pem"));
    let key = dir.join(format!("{file}-key.pem"));
    std::fs::write(&cert, &issued.cert_pem).expect("write certificate");
    std::fs::write(&key, issued.key_pem.as_bytes()).expect("write key");
    (cert, key)
}

// ---- SoftHSMv2 as the vendor HSM behind a pkcs11 partition ----

/// SoftHSMv2's PKCS#11 module (Debian `softhsm2`).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Whether SoftHSMv2 is installed (tests that need it skip, saying so,
/// when it is not).
pub fn softhsm_available() -> bool {
    Path::new(SOFTHSM_MODULE).exists()
}

/// A SoftHSMv2 token store of its own (one `SOFTHSM2_CONF`), with one
/// initialised token: a "device" for the pkcs11 driver.
pub struct SoftHsmDevice {
    pub dir: tempfile::TempDir,
    pub label: String,
    pub so_pin: String,
    pub pin: String,
}

impl SoftHsmDevice {
    /// `softhsm2-util --init-token --free --label LABEL` in a fresh token
    /// directory.
    pub fn new(label: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).expect("token dir");
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .expect("softhsm2.conf");
        let device = Self {
            dir,
            label: label.to_owned(),
            so_pin: "device-so-pin-1".to_owned(),
            pin: "device-user-pin-1".to_owned(),
        };
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", &device.so_pin, "--pin", &device.pin])
            .env("SOFTHSM2_CONF", device.conf())
            .output()
            .expect("run softhsm2-util");
        assert!(
            out.status.success(),
            "softhsm2-util --init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        device
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// The environment that points SoftHSMv2 at this token store.
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        vec![("SOFTHSM2_CONF", self.conf().into_os_string())]
    }

    /// Writes the device's user PIN to a file (mode 0600 by umask of a temp
    /// dir is not enough: written then restricted) and returns its path.
    pub fn pin_file(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("device.pin");
        std::fs::write(&path, format!("{}\n", self.pin)).expect("pin file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .expect("pin file mode");
        path
    }
}

impl Deployment {
    /// Puts the tenant's slot 0 on `device` (driver `pkcs11`) and adds the
    /// `[[devices]]` entry, named `name`, with the device PIN in a file.
    /// Call before the server starts.
    pub fn use_pkcs11_device(&self, name: &str, device: &SoftHsmDevice) {
        let config = std::fs::read_to_string(self.path("server.toml")).expect("server.toml");
        let mut text = String::new();
        for line in config.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("driver = \"soft\"") {
                text.push_str(&format!("driver = \"pkcs11\"\ndevice = \"{name}\"\n"));
            } else if trimmed.starts_with("algorithms =") {
                // soft driver only
            } else {
                text.push_str(line);
                text.push('\n');
            }
        }
        text.push_str(&format!(
            "\n[[devices]]\nname = \"{name}\"\nmodule = \"{SOFTHSM_MODULE}\"\ntoken_label = \"{}\"\npin_file = {:?}\nmax_sessions = 4\n",
            device.label,
            device.pin_file().display().to_string()
        ));
        std::fs::write(self.path("server.toml"), text).expect("write server.toml");
    }

    /// Like [`Deployment::run_server`], with extra environment variables
    /// for the server process (e.g. `SOFTHSM2_CONF`).
    pub fn run_server_with_env(&mut self, env: &[(&str, std::ffi::OsString)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("server.log"))
            .expect("server log file");
        let mut command = Command::new(server_bin());
        command
            .args(["run", "--config"])
            .arg(self.path("server.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        self.server = Some(command.spawn().expect("spawn hsmlink-server run"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self
                .server
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "hsmlink-server exited with {status}:\n{}",
                    self.server_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hsmlink-server did not listen on {} within 30 s:\n{}",
                self.addr,
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---- audit log, metering and session limits (issue 7) ----

impl Deployment {
    /// Sets `key = value` (values are TOML, e.g. `"2"` or `"\"x\""`) in
    /// `[section]` of server.toml, adding the section if it is missing.
    /// Call before the server starts.
    pub fn set_server_keys(&self, section: &str, keys: &[(&str, &str)]) {
        let path = self.path("server.toml");
        let text = std::fs::read_to_string(&path).expect("server.toml");
        let header = format!("[{section}]");
        let lines: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let mut out = String::new();
        let mut done = false;
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            if !done && line.trim_start().starts_with(&header) {
                out.push_str(&lines);
                done = true;
            }
        }
        if !done {
            out = format!("{header}\n{lines}\n{out}");
        }
        std::fs::write(&path, out).expect("write server.toml");
    }

    /// Runs `hsmlink-server ARGS... --config server.toml`: (success,
    /// stdout, stderr).
    pub fn server_command(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(server_bin())
            .args(args)
            .arg("--config")
            .arg(self.path("server.toml"))
            .output()
            .expect("run hsmlink-server");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `hsmlink-server audit export` of this deployment, one JSON line per record.
    pub fn audit_export(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["audit", "export"];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = self.server_command(&args);
        assert!(ok, "audit export failed: {stderr}");
        stdout.lines().map(str::to_owned).collect()
    }

    /// Runs SQL on the deployment's store (python3's sqlite3 module: tests
    /// that tamper with the audit log); returns the rows, one per line.
    pub fn sqlite(&self, sql: &str) -> String {
        let script = "import sqlite3, sys\n\
            c = sqlite3.connect(sys.argv[1])\n\
            rows = c.execute(sys.argv[2]).fetchall()\n\
            c.commit()\n\
            print('\\n'.join('|'.join(str(v) for v in r) for r in rows))\n";
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(self.path("hsmlink.db"))
            .arg(sql)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "sqlite via python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }
}

// ---- The admin API (issue 7) ----

impl Deployment {
    /// The admin listener `init` configured: 127.0.0.1, the port after the
    /// tenant port.
    pub fn admin_url(&self) -> String {
        format!("https://{}", self.admin_addr)
    }

    /// `hsmlink-server admin` with the deployment's admin certificate, then
    /// `args`; returns (success, stdout, stderr).
    pub fn admin(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(server_bin())
            .args(["admin", "--url", &self.admin_url(), "--ca"])
            .arg(self.path("ca.pem"))
            .arg("--cert")
            .arg(self.path("admin.pem"))
            .arg("--key")
            .arg(self.path("admin-key.pem"))
            .args(args)
            .output()
            .expect("run hsmlink-server admin");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

// ---- Raw clients and server.toml edits (hostile-tenant tests) ----

/// Inserts `lines` at the top of `[table]` in the deployment's server.toml
/// (the table `init` wrote). Call before the server starts.
pub fn set_server_keys(deployment: &Deployment, table: &str, lines: &[&str]) {
    let path = deployment.path("server.toml");
    let text = std::fs::read_to_string(&path).expect("server.toml");
    let header = format!("[{table}]");
    let mut out = String::new();
    let mut done = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if !done && line.trim_start().starts_with(&header) {
            for added in lines {
                out.push_str(added);
                out.push('\n');
            }
            done = true;
        }
    }
    if !done {
        out.push_str(&format!("\n{header}\n"));
        for added in lines {
            out.push_str(added);
            out.push('\n');
        }
    }
    std::fs::write(&path, out).expect("write server.toml");
}

/// A blocking TLS stream to the server, as a raw client.
pub type RawStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A rustls client configuration trusting the deployment's CA, with the
/// certificate `cert` / `key`.
pub fn raw_client_config(
    deployment: &Deployment,
    cert: &Path,
    key: &Path,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(deployment.path("ca.pem")).expect("ca.pem") {
        roots.add(cert.expect("ca cert")).expect("add root");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client auth"),
    )
}

/// Connects, completes the handshake and exchanges the hello; the stream
/// and the server's reply, or the error that ended the exchange.
pub fn raw_hello(
    deployment: &Deployment,
    config: &std::sync::Arc<rustls::ClientConfig>,
) -> Result<(RawStream, hsmlink_protocol::HelloReply), String> {
    use hsmlink_protocol::frame::{self, FrameKind};
    use hsmlink_protocol::hello::HELLO_FRAME_VERSION;
    use hsmlink_protocol::{AppInstance, Hello};
    let tls = rustls::ClientConnection::new(
        config.clone(),
        rustls::pki_types::ServerName::try_from("localhost").expect("name"),
    )
    .expect("client connection");
    let tcp = TcpStream::connect(deployment.addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let hello = Hello::new(
        "raw-test-client".into(),
        AppInstance([9; 16]),
        std::process::id(),
    );
    frame::write_frame(
        &mut stream,
        FrameKind::Hello,
        HELLO_FRAME_VERSION,
        0,
        &hello,
    )
    .map_err(|e| format!("send hello: {e}"))?;
    let (_, reply) = frame::read_message::<_, hsmlink_protocol::HelloReply>(
        &mut stream,
        FrameKind::HelloReply,
        HELLO_FRAME_VERSION,
    )
    .map_err(|e| format!("read hello reply: {e}"))?;
    Ok((stream, reply))
}

/// True once the server has closed `stream` (end of stream or an error)
/// within `limit`; false if it is still open (no data arrives either).
pub fn closed_by_server(stream: &mut RawStream, limit: Duration) -> bool {
    use std::io::Read;
    stream
        .sock
        .set_read_timeout(Some(limit))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

// ---- PKCS#11 helpers shared by the test files ----

/// A PIN for cryptoki.
pub fn pin(text: &str) -> cryptoki::types::AuthPin {
    cryptoki::types::AuthPin::new(text.into())
}

/// The `CK_RV` of a call that must fail.
pub fn rv<T: std::fmt::Debug>(
    result: Result<T, cryptoki::error::Error>,
) -> cryptoki::error::RvError {
    match result {
        Err(cryptoki::error::Error::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// The SO PIN [`user_session`] sets.
pub const SO_PIN: &str = "so-pin-1234";

/// The first slot's token initialised as a tenant does (label, SO PIN,
/// a user PIN set by the SO and changed by the user to `user_pin`), and a
/// R/W session logged in as that user.
pub fn user_session(pkcs11: &Pkcs11, label: &str, user_pin: &str) -> cryptoki::session::Session {
    user_session_on(pkcs11, 0, label, user_pin)
}

/// [`user_session`] on the tenant's slot number `index` (in slot list order).
pub fn user_session_on(
    pkcs11: &Pkcs11,
    index: usize,
    label: &str,
    user_pin: &str,
) -> cryptoki::session::Session {
    use cryptoki::session::UserType;
    let slot = pkcs11.get_all_slots().unwrap()[index];
    pkcs11.init_token(slot, &pin(SO_PIN), label).unwrap();
    let session = pkcs11.open_rw_session(slot).unwrap();
    session.login(UserType::So, Some(&pin(SO_PIN))).unwrap();
    session.init_pin(&pin("first-pin")).unwrap();
    session.logout().unwrap();
    session
        .login(UserType::User, Some(&pin("first-pin")))
        .unwrap();
    session.set_pin(&pin("first-pin"), &pin(user_pin)).unwrap();
    session
}

/// A vendor-defined mechanism without a parameter (hsmlink's 0xC853xxxx).
pub fn vendor(mechanism: u64) -> cryptoki::mechanism::Mechanism<'static> {
    cryptoki::mechanism::Mechanism::VendorDefined(
        cryptoki::mechanism::vendor_defined::VendorDefinedMechanism::new::<()>(
            cryptoki::mechanism::MechanismType::new_vendor_defined(mechanism).unwrap(),
            None,
        ),
    )
}

/// Upper-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Bytes of a hex string (either case).
pub fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs `openssl ARGS` in `dir`; fails the test with its error output.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// OpenSSL's AES-ECB encryption of one zero block under `key` (a key's
/// value seen from outside the token).
pub fn openssl_aes_ecb_zero(key: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let cipher = format!("-aes-{}-ecb", key.len() * 8);
    let mut child = Command::new("openssl")
        .args(["enc", &cipher, "-nopad", "-K", &hex(key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&[0u8; 16])
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success(), "openssl enc {cipher}");
    out.stdout
}

/// A virtual environment `dir/name` with `packages` from PyPI; its python.
/// Fails saying which test needs them when PyPI cannot be reached.
pub fn python_venv(
    dir: &std::path::Path,
    name: &str,
    packages: &[&str],
    needed_by: &str,
) -> PathBuf {
    let venv = dir.join(name);
    let made = Command::new("/usr/bin/python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("run /usr/bin/python3 -m venv");
    assert!(made.success(), "python3 -m venv failed");
    let pip = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .output()
        .expect("run pip");
    assert!(
        pip.status.success(),
        "cannot install {packages:?} from PyPI (is PyPI reachable?): {needed_by} needs them.\n{}{}",
        String::from_utf8_lossy(&pip.stdout),
        String::from_utf8_lossy(&pip.stderr)
    );
    venv.join("bin/python")
}

// ---- One suite, run once per driver (issue 6) ----

/// Where a suite's partition lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDriver {
    /// The built-in software HSM.
    Soft,
    /// The `pkcs11` driver on a SoftHSMv2 token.
    Pkcs11,
    /// The `pkcs11` driver on two SoftHSMv2 tokens, one a replica of the
    /// other.
    Replicated,
}

/// The environment variable that tells a child which driver it runs on.
pub const DRIVER_ENV: &str = "HSMLINK_TEST_DRIVER";

/// The driver this child runs against (the soft HSM unless told).
pub fn test_driver() -> OnDriver {
    match std::env::var(DRIVER_ENV).as_deref() {
        Ok("pkcs11") => OnDriver::Pkcs11,
        Ok("replicated") => OnDriver::Replicated,
        _ => OnDriver::Soft,
    }
}

/// A running deployment whose tenant's slot 0 is on a driver, with its
/// SoftHSMv2 token store for the `pkcs11` ones.
pub struct SuiteDeployment {
    pub deployment: Deployment,
    pub device: Option<SoftHsmDevice>,
    pub driver: OnDriver,
}

impl SuiteDeployment {
    /// Started on `driver`; `None` (after saying why) for a `pkcs11` one
    /// without SoftHSMv2.
    pub fn start(driver: OnDriver) -> Option<Self> {
        let deployment = Deployment::init();
        let device = match driver {
            OnDriver::Soft => None,
            OnDriver::Pkcs11 | OnDriver::Replicated => {
                if !softhsm_available() {
                    eprintln!(
                        "SKIPPED ({driver:?}): {SOFTHSM_MODULE} is not installed (Debian package softhsm2)"
                    );
                    return None;
                }
                let device = SoftHsmDevice::new("suite-0");
                if driver == OnDriver::Pkcs11 {
                    deployment.use_pkcs11_device("suite0", &device);
                } else {
                    device.add_token("suite-1");
                    deployment.use_pkcs11_device("suite0", &device);
                    deployment.add_replica("suite1", "suite-1", &device);
                }
                Some(device)
            }
        };
        let mut suite = Self {
            deployment,
            device,
            driver,
        };
        suite.run_server();
        Some(suite)
    }

    pub fn run_server(&mut self) {
        let env = self
            .device
            .as_ref()
            .map(SoftHsmDevice::env)
            .unwrap_or_default();
        self.deployment.run_server_with_env(&env);
    }

    /// What a child needs: the module's configuration, the token store,
    /// the driver.
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut env = self.deployment.module_env();
        if let Some(device) = &self.device {
            env.extend(device.env());
        }
        let driver = match self.driver {
            OnDriver::Soft => "soft",
            OnDriver::Pkcs11 => "pkcs11",
            OnDriver::Replicated => "replicated",
        };
        env.push((DRIVER_ENV, driver.into()));
        env
    }
}

/// One test of a suite: in the child, `body`; in the parent, a deployment
/// on `driver` and the child.
pub fn suite_test(name: &str, driver: OnDriver, body: fn()) {
    if in_child() {
        body();
        return;
    }
    let Some(suite) = SuiteDeployment::start(driver) else {
        return;
    };
    run_in_child(name, &suite.env());
}

/// Runs each named function (a suite's test body, run in a child) once per
/// driver: as `on_soft::NAME`, `on_pkcs11::NAME` and `on_replicas::NAME`.
#[allow(unused_macros, reason = "used by the suites that run per driver")]
macro_rules! per_driver {
    ($($name:ident),* $(,)?) => {
        mod on_soft {
            $(
                #[test]
                fn $name() {
                    crate::common::suite_test(
                        concat!("on_soft::", stringify!($name)),
                        crate::common::OnDriver::Soft,
                        super::$name,
                    );
                }
            )*
        }
        mod on_pkcs11 {
            $(
                #[test]
                fn $name() {
                    crate::common::suite_test(
                        concat!("on_pkcs11::", stringify!($name)),
                        crate::common::OnDriver::Pkcs11,
                        super::$name,
                    );
                }
            )*
        }
        mod on_replicas {
            $(
                #[test]
                fn $name() {
                    crate::common::suite_test(
                        concat!("on_replicas::", stringify!($name)),
                        crate::common::OnDriver::Replicated,
                        super::$name,
                    );
                }
            )*
        }
    };
}
#[allow(unused_imports, reason = "used by the suites that run per driver")]
pub(crate) use per_driver;

impl SoftHsmDevice {
    /// One more token in the same store (a second device of one module).
    pub fn add_token(&self, label: &str) {
        init_softhsm_token(&self.conf(), label, &self.so_pin, &self.pin);
    }
}

impl Deployment {
    /// Adds device `name` (token `label` of `device`'s store) as a replica
    /// of slot 0's device. Call after [`Deployment::use_pkcs11_device`],
    /// before the server starts.
    pub fn add_replica(&self, name: &str, label: &str, device: &SoftHsmDevice) {
        let config = std::fs::read_to_string(self.path("server.toml")).expect("server.toml");
        let mut text = String::new();
        let mut done = false;
        for line in config.lines() {
            text.push_str(line);
            text.push('\n');
            if !done && line.trim_start().starts_with("driver = \"pkcs11\"") {
                text.push_str(&format!("replicas = [\"{name}\"]\n"));
                done = true;
            }
        }
        assert!(done, "no pkcs11 slot in server.toml");
        text.push_str(&format!(
            "\n[[devices]]\nname = \"{name}\"\nmodule = \"{SOFTHSM_MODULE}\"\ntoken_label = \"{label}\"\npin_file = {:?}\nmax_sessions = 4\n",
            device.pin_file().display().to_string()
        ));
        std::fs::write(self.path("server.toml"), text).expect("write server.toml");
    }
}

/// Whether this child runs on the `pkcs11` driver (SoftHSMv2 behind).
pub fn on_softhsm() -> bool {
    test_driver() != OnDriver::Soft
}

// ---- HSMs that fail on command (issues 6 and 9) ----

/// The user PIN of every [`Hsm`] token.
pub const DEVICE_PIN: &str = "device-user-pin-1";
const DEVICE_SO_PIN: &str = "device-so-pin-1";

/// One stand-in HSM: a SoftHSMv2 token store, a copy of SoftHSMv2's
/// library (its own instance in the server's process) and a copy of the
/// shim in front of it, with the control file that makes it fail.
pub struct Hsm {
    pub dir: PathBuf,
    pub name: &'static str,
}

impl Hsm {
    pub fn new(root: &Path, name: &'static str, tokens: &[&str]) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("tokens")).unwrap();
        std::fs::write(
            dir.join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.join("tokens").display()
            ),
        )
        .unwrap();
        std::fs::copy(SOFTHSM_MODULE, dir.join("softhsm.so")).unwrap();
        std::fs::copy(
            module_path().with_file_name("libhsmlink_fault_shim.so"),
            dir.join("shim.so"),
        )
        .unwrap();
        std::fs::write(
            dir.join("shim.so.conf"),
            format!(
                "module = {}\nenv SOFTHSM2_CONF = {}\ncontrol = {}\n",
                dir.join("softhsm.so").display(),
                dir.join("softhsm2.conf").display(),
                dir.join("control").display()
            ),
        )
        .unwrap();
        for token in tokens {
            init_softhsm_token(&dir.join("softhsm2.conf"), token, DEVICE_SO_PIN, DEVICE_PIN);
        }
        Self { dir, name }
    }

    /// An HSM that is a token of a SoftHSMv2 instance shared with other
    /// `shared` HSMs (one store, `store`'s conf): for tests that load them
    /// under concurrent load (two SoftHSMv2 copies in one process do not
    /// bear it). Its own shim copy and control file make it fail alone.
    pub fn shared(root: &Path, name: &'static str, token: &str) -> Self {
        let dir = root.join(name);
        let store = root.join("shared-store");
        std::fs::create_dir_all(store.join("tokens")).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        let conf = store.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                store.join("tokens").display()
            ),
        )
        .unwrap();
        std::fs::copy(
            module_path().with_file_name("libhsmlink_fault_shim.so"),
            dir.join("shim.so"),
        )
        .unwrap();
        std::fs::write(
            dir.join("shim.so.conf"),
            format!(
                "module = {SOFTHSM_MODULE}\nenv SOFTHSM2_CONF = {}\ncontrol = {}\nshared = yes\n",
                conf.display(),
                dir.join("control").display()
            ),
        )
        .unwrap();
        init_softhsm_token(&conf, token, DEVICE_SO_PIN, DEVICE_PIN);
        // pkcs11-tool checks go to SoftHSMv2 itself, on the shared store.
        std::os::unix::fs::symlink(SOFTHSM_MODULE, dir.join("softhsm.so")).unwrap();
        std::os::unix::fs::symlink(&conf, dir.join("softhsm2.conf")).unwrap();
        Self { dir, name }
    }

    pub fn at(root: &Path, name: &'static str) -> Self {
        Self {
            dir: root.join(name),
            name,
        }
    }

    pub fn shim(&self) -> PathBuf {
        self.dir.join("shim.so")
    }

    /// Every call to the HSM fails with `CKR_DEVICE_ERROR` from now on.
    pub fn fail(&self) {
        std::fs::write(self.dir.join("control"), "fail\n").unwrap();
    }

    pub fn recover(&self) {
        let _ = std::fs::remove_file(self.dir.join("control"));
    }

    /// The `CKA_ID`s (hex) of the objects on `token`, as SoftHSMv2 itself
    /// lists them (pkcs11-tool on the HSM's own library, not hsmlink).
    pub fn ids(&self, token: &str) -> Vec<String> {
        let out = Command::new("pkcs11-tool")
            .args([
                "--module",
                &self.dir.join("softhsm.so").display().to_string(),
            ])
            .args([
                "--token-label",
                token,
                "--login",
                "--pin",
                DEVICE_PIN,
                "--list-objects",
            ])
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pkcs11-tool on {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ID:"))
            .map(|id| id.trim().to_owned())
            .collect()
    }

    /// Whether `token` holds an object of hsmlink uid `uid` (hex).
    pub fn holds(&self, token: &str, uid: &str) -> bool {
        // hsmlink's tag: "hl1:" or "hl2:" (hex 686c313a / 686c323a), the uid.
        self.ids(token)
            .iter()
            .any(|id| id.get(8..8 + uid.len()) == Some(uid))
    }
}

// ---- What one child leaves for the next (key=value lines) ----

/// The state file of a multi-child test (`HSMLINK_TEST_STATE`).
pub fn state_file() -> PathBuf {
    PathBuf::from(std::env::var_os("HSMLINK_TEST_STATE").expect("HSMLINK_TEST_STATE"))
}

pub fn save_state(state: &std::collections::BTreeMap<String, String>) {
    let text: String = state.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(state_file(), text).expect("write the state file");
}

/// The state a previous child left (empty if none).
pub fn load_state() -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(state_file())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `softhsm2-util --init-token --free` in the store of `conf`, with the
/// [`Hsm`] PINs.
fn init_softhsm_token(conf: &Path, label: &str, so_pin: &str, user_pin: &str) {
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--so-pin", so_pin, "--pin", user_pin])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
