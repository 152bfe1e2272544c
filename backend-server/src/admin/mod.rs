//! The provider's administration plane: an HTTPS listener of its own
//! (`[admin] listen`), mutual TLS, JSON under `/v1/` ([`api`]).
//!
//! Who may do what is decided by the client certificate alone:
//! - a certificate of the provider-admin CA (`[admin] admin_ca`, a CA of
//!   its own, never the tenant CA) may call every route but the tenant
//!   report;
//! - a tenant certificate (the tenant CA's, not revoked) may call
//!   `GET /v1/tenant/report` (its own tenant's report), the JSON crypto API
//!   `POST /v1/crypto/...` ([`crypto_api`], its own keys, with its user PIN
//!   or a login token) and the web console's pages scoped to its tenant
//!   ([`console`]), and nothing else;
//! - anything else fails the handshake.
//!
//! The web console (`/console`) shows the provider everything and lets it
//! suspend, resume, terminate and revoke, through the API's own handlers.
//!
//! No provider route logs in to a partition, sets or reads a PIN, or uses
//! or exports a key: the provider can allocate, suspend, resume and
//! terminate partitions, and nothing else touches them. The crypto API
//! refuses provider certificates (403).
//!
//! Every change (and every audit export) is recorded in the audit log
//! ([`crate::audit::Audit::record_admin`]) before the reply.

pub mod api;
pub mod backup;
pub mod certs;
pub mod client;
pub mod console;
pub mod crypto_api;
pub mod metrics;
pub mod report;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::config::{AdminSection, Config};
use crate::dispatch::ServerState;
use crate::identity::{self, Fingerprint, PeerIdentity};
use crate::server::{Server, ServerError, shutdown_signal};
use crate::tls::{self, AdminVerifiers};

/// Who is calling, from the verified client certificate.
#[derive(Clone, Debug)]
pub enum Role {
    /// A provider admin (certificate of the provider-admin CA).
    Admin {
        subject: String,
        fingerprint: Fingerprint,
    },
    /// A tenant (certificate of the tenant CA): its report, the crypto
    /// API, its console pages.
    Tenant(PeerIdentity),
    /// A tenant-CA certificate that names no tenant.
    Nobody,
}

/// What every admin request is answered from.
#[derive(Debug)]
pub struct AdminContext {
    pub state: Arc<ServerState>,
    /// The tenant CA (PEM), and its key's path if the API may issue.
    pub tenant_ca_pem: String,
    pub tenant_ca_key: Option<std::path::PathBuf>,
    /// The store's file (audit reads, metering).
    pub store_path: std::path::PathBuf,
    /// For the tenant report.
    pub settings: ReportSettings,
    /// The crypto API's login tokens.
    pub tokens: crypto_api::Tokens,
    /// The per-source PIN throttle, shared with the tenant listener when
    /// the server runs both ([`AdminServer::with_login_throttle`]).
    pub throttle: Arc<crate::ratelimit::LoginThrottle>,
    /// The console's CSRF key, drawn at start.
    pub console_key: zeroize::Zeroizing<[u8; 32]>,
}

/// Configuration the tenant report shows.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    pub max_pin_failures: u32,
    pub require_user_pin_change: bool,
    pub login_idle_timeout_s: u64,
    pub login_max_lifetime_s: u64,
    pub tls_min_version: &'static str,
    /// The device modules, by device name (pkcs11 driver).
    pub device_modules: Vec<(String, String)>,
}

/// A bound admin listener.
pub struct AdminServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    verifiers: AdminVerifiers,
    ctx: Arc<AdminContext>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for AdminServer {
    // TlsAcceptor has no Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `[admin] listen` and loads the TLS material.
    pub async fn bind(
        config: &Config,
        admin: &AdminSection,
        state: Arc<ServerState>,
    ) -> Result<Self, ServerError> {
        let addr = admin.listen.as_str();
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            ServerError::Io(io::Error::new(
                e.kind(),
                format!("admin.listen: cannot listen on {addr}: {e}"),
            ))
        })?;
        Self::with_listener(config, admin, state, listener)
    }

    /// Serves on a listener the caller bound; `[admin] listen` is ignored.
    pub fn with_listener(
        config: &Config,
        admin: &AdminSection,
        state: Arc<ServerState>,
        listener: TcpListener,
    ) -> Result<Self, ServerError> {
        let (tls, verifiers) =
            tls::admin_server_config(&config.tls, admin, state.registry.live().clone())?;
        let tenant_ca_pem = std::fs::read_to_string(&config.tls.tenant_ca).map_err(|e| {
            ServerError::Io(io::Error::new(
                e.kind(),
                format!("tls.tenant_ca: {}: {e}", config.tls.tenant_ca.display()),
            ))
        })?;
        let limits = config.security.login_limits();
        let mut console_key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *console_key).map_err(|e| {
            ServerError::Io(io::Error::other(format!(
                "no randomness for the console: {e}"
            )))
        })?;
        let ctx = AdminContext {
            tokens: crypto_api::Tokens::default(),
            throttle: crate::ratelimit::LoginThrottle::new(config.security.login_throttle()),
            console_key,
            state,
            tenant_ca_pem,
            tenant_ca_key: admin.tenant_ca_key.clone(),
            store_path: config.store.path.clone(),
            settings: ReportSettings {
                max_pin_failures: config.security.max_pin_failures.get(),
                require_user_pin_change: config.security.require_user_pin_change,
                login_idle_timeout_s: limits.idle.as_secs(),
                login_max_lifetime_s: limits.lifetime.as_secs(),
                tls_min_version: match config.server.tls_min_version {
                    crate::config::TlsMinVersion::Tls12 => "1.2",
                    crate::config::TlsMinVersion::Tls13 => "1.3",
                },
                device_modules: config
                    .devices
                    .iter()
                    .map(|d| (d.name.to_string(), d.module.display().to_string()))
                    .collect(),
            },
        };
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(tls),
            verifiers,
            ctx: Arc::new(ctx),
            handshake_timeout: config.server.handshake_timeout(),
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Uses the tenant listener's PIN throttle for the crypto API, so a
    /// source's wrong PINs count the same on both ports.
    pub fn with_login_throttle(mut self, throttle: Arc<crate::ratelimit::LoginThrottle>) -> Self {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.throttle = throttle;
        }
        self
    }

    /// Serves until `stop` becomes true, then lets the requests under way
    /// finish (a few seconds at most).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if let Ok(addr) = self.local_addr() {
            info!("hsmlink-server admin API listening on {addr}");
        }
        let mut connections = JoinSet::new();
        let for_connections = stop.clone();
        // Expired crypto API tokens end even when no request comes.
        let mut sweep = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => break,
                _ = sweep.tick() => {
                    let ctx = self.ctx.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        ctx.tokens.sweep(&ctx.state, std::time::Instant::now());
                    })
                    .await;
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let acceptor = self.acceptor.clone();
                        let verifiers = self.verifiers.clone();
                        let ctx = self.ctx.clone();
                        let timeout = self.handshake_timeout;
                        let stop = for_connections.clone();
                        connections.spawn(serve_connection(
                            acceptor, verifiers, ctx, tcp, peer, timeout, stop,
                        ));
                    }
                    Err(e) => {
                        warn!("admin accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        connections.shutdown().await;
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    verifiers: AdminVerifiers,
    ctx: Arc<AdminContext>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            info!(%peer, reason = %e, "admin connection refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            info!(%peer, "admin connection refused: TLS handshake timed out");
            return;
        }
    };
    let role = {
        let conn = tls.get_ref().1;
        let chain = conn.peer_certificates().unwrap_or(&[]);
        if tls::is_admin_certificate(&verifiers, chain) {
            match chain.first() {
                Some(leaf) => Role::Admin {
                    subject: subject_of(leaf.as_ref()),
                    fingerprint: Fingerprint::of(leaf.as_ref()),
                },
                None => Role::Nobody,
            }
        } else {
            match identity::identify_connection(conn) {
                Ok(identity) => Role::Tenant(identity),
                Err(_) => Role::Nobody,
            }
        }
    };
    debug!(%peer, ?role, "admin connection");
    let service = service_fn(move |request| {
        let ctx = ctx.clone();
        let role = role.clone();
        async move { Ok::<_, std::convert::Infallible>(api::handle(ctx, role, peer, request).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(connection);
    let stopping = tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(%peer, "admin connection ended: {e}");
            }
            false
        }
        _ = stop.wait_for(|s| *s) => true,
    };
    if stopping {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
    }
}

fn subject_of(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_default()
}

/// `hsmlink-server run`: the tenant listener and, with `[admin]`, the admin
/// listener, on a two-worker runtime, until SIGTERM or SIGINT.
pub fn run_until_signalled(config: &Config) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hsmlink-worker")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let signal = shutdown_signal()?;
        let server = Server::bind(config).await?;
        let (stop, stopped) = watch::channel(false);
        let admin = match &config.admin {
            Some(admin) => {
                let admin = AdminServer::bind(config, admin, server.state().clone())
                    .await?
                    .with_login_throttle(server.login_throttle().clone());
                Some(tokio::spawn(admin.run(stopped)))
            }
            None => None,
        };
        let result = server
            .run(async move {
                signal.await;
                let _ = stop.send(true);
            })
            .await;
        if let Some(admin) = admin {
            let _ = admin.await;
        }
        result
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
