//! The listener: accepts connections, hands each to [`crate::transport`],
//! and shuts down gracefully.
//!
//! Shutdown: stop accepting, tell every connection to stop reading, give the
//! requests under way up to `shutdown_grace_ms` to finish and their replies
//! to go out, then drop whatever is left.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::config::Config;
use crate::dispatch::{ServerState, StateError};
use crate::tls::{self, TlsError};
use crate::transport::{self, Shared};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Bind { addr: String, source: io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A bound, ready server. [`Server::run`] serves until the shutdown future
/// completes.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown_grace: Duration,
}

impl Server {
    /// Binds `server.listen` and loads the TLS material.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let addr = config.server.listen.as_str();
        // TLS first: a bad key should not leave a port open even briefly.
        tls::server_config(&config.tls, config.server.tls_min_version)?;
        let state = ServerState::open(config)?;
        // The verifier that also refuses the registry's revoked certificates.
        let tls = tls::tenant_server_config(
            &config.tls,
            config.server.tls_min_version,
            state.registry.live().clone(),
        )?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Self::new(config, listener, tls, state))
    }

    /// Serves on a listener the caller bound (tests bind 127.0.0.1:0);
    /// `server.listen` is ignored.
    pub fn with_listener(config: &Config, listener: TcpListener) -> Result<Self, ServerError> {
        let state = ServerState::open(config)?;
        let tls = tls::tenant_server_config(
            &config.tls,
            config.server.tls_min_version,
            state.registry.live().clone(),
        )?;
        Ok(Self::new(config, listener, tls, state))
    }

    fn new(
        config: &Config,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        state: ServerState,
    ) -> Self {
        let max_in_flight = usize::try_from(config.server.max_in_flight_per_connection.get())
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        let shared = Shared {
            state: Arc::new(state),
            acceptor: TlsAcceptor::from(tls),
            handshake_timeout: config.server.handshake_timeout(),
            max_in_flight,
            limits: crate::ratelimit::ConnectionLimits::new(
                usize::try_from(config.server.max_connections.get()).unwrap_or(usize::MAX),
                usize::try_from(config.server.max_connections_per_tenant.get())
                    .unwrap_or(usize::MAX),
            ),
            throttle: crate::ratelimit::LoginThrottle::new(config.security.login_throttle()),
        };
        Self {
            listener,
            shared: Arc::new(shared),
            shutdown_grace: config.server.shutdown_grace(),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &Arc<ServerState> {
        &self.shared.state
    }

    /// The per-source PIN throttle (the admin listener's crypto API shares it).
    pub fn login_throttle(&self) -> &Arc<crate::ratelimit::LoginThrottle> {
        &self.shared.throttle
    }

    /// Accepts and serves connections until `shutdown` completes, then shuts
    /// down gracefully and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let addr = self.local_addr()?;
        info!("hsmlink-server listening on {addr}");
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        let next_id = AtomicU64::new(1);
        // Applications gone for the grace period lose their sessions.
        let mut reaper = tokio::time::interval(reap_interval(self.shared.state.app_grace()));
        reaper.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = reaper.tick() => {
                    let state = self.shared.state.clone();
                    // Drivers may block (a partition busy hashing a PIN).
                    let _ = tokio::task::spawn_blocking(move || {
                        state.reap_idle_apps(std::time::Instant::now())
                    })
                    .await;
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Small request/response frames: don't wait for Nagle.
                        let _ = tcp.set_nodelay(true);
                        let conn = next_id.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(conn, %peer, "TCP connection accepted");
                        connections.spawn(transport::serve(
                            self.shared.clone(),
                            tcp,
                            peer,
                            conn,
                            stopped.clone(),
                        ));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: don't spin.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }

        drop(self.listener);
        info!(
            connections = connections.len(),
            grace_ms = self.shutdown_grace.as_millis(),
            "shutting down: no new connections; letting requests under way finish"
        );
        // Only fails if every receiver is gone, i.e. no connection is left.
        let _ = stop.send(true);
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                connections = connections.len(),
                "shutdown grace period over; closing the remaining connections"
            );
            connections.shutdown().await;
        }
        // The audit writer commits what is queued, signs the chain heads
        // and writes the metering counters.
        if let Some(audit) = self.shared.state.audit().cloned() {
            let _ = tokio::task::spawn_blocking(move || audit.close()).await;
        }
        info!("hsmlink-server stopped");
        Ok(())
    }
}

/// How often to look for applications gone: a tenth of the grace period,
/// between 10 ms and 1 s.
fn reap_interval(grace: Duration) -> Duration {
    (grace / 10).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed
/// here, before the future is polled, so no early signal is lost.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let which = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!("{which} received");
    })
}

/// `hsmlink-server run`: a two-worker runtime serving `config` until SIGTERM
/// or SIGINT.
pub fn run_until_signalled(config: &Config) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hsmlink-worker")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Handlers first: a SIGTERM right after the port opens is a graceful
        // shutdown too.
        let signal = shutdown_signal()?;
        let server = Server::bind(config).await?;
        server.run(signal).await
    })?;
    // Nothing should be left; don't let a stuck task hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
