//! Getting a [`Request`] to hsmlink-server and its [`Response`] back.
//!
//! A small pool of idle connections behind a mutex: a call checks one out
//! (or opens a new one, trying each configured server in order), writes one
//! request frame, reads the response with the same id, and returns the
//! connection to the pool. Any failure drops the connection. A request the
//! server may run twice with no harm ([`Request::may_run_twice`]: reads,
//! random, a single-part operation carrying its init) is sent again, once,
//! on a fresh connection when a reused idle connection turns out to have
//! been closed before any byte of the reply arrived. Any other request (a
//! key made, an object destroyed, a login) is never sent twice: a closed
//! connection cannot tell whether the server ran it before the close (a
//! reset by a middlebox after the server read the request), so before such
//! a request an idle connection is checked for a close the server already
//! sent, and once sent, a broken connection is the call's
//! `CKR_DEVICE_ERROR`.
//!
//! Blocking rustls over `std::net`, no runtime, no background thread: every
//! wait is bounded by `connect_timeout_ms` (connect, handshake, hello) or
//! `io_timeout_ms` (each request).
//!
//! Fork: idle connections belong to the process that opened them. In a child
//! created by `fork()` the pool finds the parent's connections and drops
//! them without writing a byte (no request, no TLS close_notify: the parent
//! goes on using them; closing the child's copy of a socket sends nothing
//! while the parent holds it), then opens the child's own connections. Their
//! hello carries the same application instance and the child's process id,
//! so the child carries on with the parent's server-side sessions.

mod connection;
mod pkcs12;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cryptoki_sys::{CKR_DATA_LEN_RANGE, CKR_DEVICE_ERROR};
use hsmlink_protocol::{AppInstance, CodecError, Hello, Request, Response, codec};
use parking_lot::Mutex;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use zeroize::Zeroizing;

use self::connection::{Connection, Failure, Params};
use crate::config::{Config, ConfigError, ServerAddr};
use crate::error::Error;
use crate::log;
use crate::process;

/// Idle connections kept beyond this are closed.
const MAX_IDLE: usize = 8;

pub struct Transport {
    servers: Vec<Server>,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    io_timeout: Duration,
    /// The hello of every connection but for its process id, set when the
    /// connection opens.
    hello: Hello,
    idle: Mutex<Pool>,
    next_id: AtomicU64,
    /// Request frames written, for tests that count round trips.
    frames_sent: AtomicU64,
}

struct Server {
    addr: ServerAddr,
    name: ServerName<'static>,
    /// A "cannot reach" line was logged and nothing succeeded since: further
    /// failures go to the debug level, so a retrying application does not
    /// flood its log.
    down_reported: AtomicBool,
}

impl Transport {
    /// Prepares (without connecting: connections are opened lazily) the
    /// transport described by `config`. Fails on unusable certificates.
    pub fn new(config: &Config, app_instance: AppInstance, pid: u32) -> Result<Self, ConfigError> {
        let tls = tls::client_config(config)?;
        let servers = config
            .servers
            .iter()
            .map(|addr| {
                Ok(Server {
                    addr: addr.clone(),
                    name: tls::server_name(config, addr)?,
                    down_reported: AtomicBool::new(false),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let client = format!("hsmlink-pkcs11 {}", env!("CARGO_PKG_VERSION"));
        Ok(Self {
            servers,
            tls,
            connect_timeout: config.connect_timeout,
            io_timeout: config.io_timeout,
            hello: Hello::new(client, app_instance, pid),
            idle: Mutex::new(Pool {
                pid,
                connections: Vec::new(),
            }),
            // 0 is the hello's request id.
            next_id: AtomicU64::new(1),
            frames_sent: AtomicU64::new(0),
        })
    }

    /// Sends `request` and returns the server's response, whatever its `CK_RV`.
    ///
    /// Errors: [`Error::unreachable`] when no server can be reached,
    /// `CKR_DEVICE_ERROR` when a connection breaks or the reply is malformed.
    pub fn call(&self, request: &Request) -> Result<Response, Error> {
        let function = request.function_name();
        // The encoded request may carry a PIN or key material: wiped when dropped.
        let body = codec::encode(request).map(Zeroizing::new).map_err(|e| {
            log::error!("{function}: cannot encode the request: {e}");
            match e {
                CodecError::TooLarge(_) => Error::new(CKR_DATA_LEN_RANGE),
                _ => Error::new(CKR_DEVICE_ERROR),
            }
        })?;

        let resend = request.may_run_twice();
        let mut idle = self.idle.lock().own().pop();
        if !resend {
            // Sent once only: not on a connection the server has closed.
            while let Some(conn) = idle.take() {
                if conn.closed_by_peer() {
                    log::debug!("{function}: idle connection to {} was closed", conn.peer());
                    idle = self.idle.lock().own().pop();
                } else {
                    idle = Some(conn);
                    break;
                }
            }
        }
        if let Some(mut conn) = idle {
            self.frame_sent(function);
            match conn.round_trip(self.request_id(), &body) {
                Ok(response) => {
                    self.check_in(conn);
                    return Ok(response);
                }
                Err(Failure::Closed(reason)) if resend => log::debug!(
                    "{function}: idle connection to {} was closed ({reason}); \
                     sending again on a fresh connection",
                    conn.peer()
                ),
                Err(Failure::Closed(reason)) => {
                    // The server may have run it before the close.
                    log::error!(
                        "{function}: the connection to {} closed before the answer ({reason}); \
                         not sent again (it may have run)",
                        conn.peer()
                    );
                    return Err(Error::device());
                }
                Err(Failure::Failed(reason)) => {
                    log::error!(
                        "{function}: hsmlink-server at {} failed: {reason}",
                        conn.peer()
                    );
                    return Err(Error::device());
                }
            }
        }

        let mut conn = self.connect()?;
        self.frame_sent(function);
        match conn.round_trip(self.request_id(), &body) {
            Ok(response) => {
                self.check_in(conn);
                Ok(response)
            }
            Err(Failure::Closed(reason) | Failure::Failed(reason)) => {
                log::error!(
                    "{function}: hsmlink-server at {} failed: {reason}",
                    conn.peer()
                );
                Err(Error::device())
            }
        }
    }

    /// `C_Finalize`: tells the server, on an idle connection if there is one
    /// (never opening one just for this), that this application instance is
    /// done, then closes every idle connection. Best effort.
    pub fn finalize(&self) {
        let idle = std::mem::take(self.idle.lock().own());
        let mut idle = idle.into_iter();
        if let Some(mut conn) = idle.next() {
            let outcome = codec::encode(&Request::Finalize)
                .map_err(|e| e.to_string())
                .and_then(|body| {
                    conn.round_trip(self.request_id(), &body)
                        .map_err(|(Failure::Closed(reason) | Failure::Failed(reason))| reason)
                });
            match outcome {
                Ok(response) => log::debug!("C_Finalize: server answered {:#x}", response.rv.0),
                Err(reason) => log::debug!("C_Finalize: goodbye not delivered: {reason}"),
            }
            conn.close();
        }
        idle.for_each(Connection::close);
    }

    /// Counts one request frame and logs it (at trace level: the name of
    /// the function only, never its arguments).
    fn frame_sent(&self, function: &str) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        log::trace!("{function}: request frame sent");
    }

    /// Request frames written so far (hello and goodbye not counted).
    #[cfg(test)]
    pub fn frames_sent(&self) -> u64 {
        self.frames_sent.load(Ordering::Relaxed)
    }

    fn request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn check_in(&self, conn: Connection) {
        let mut pool = self.idle.lock();
        let idle = pool.own();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        } else {
            drop(pool);
            conn.close();
        }
    }

    /// Opens a connection to the first configured server that answers.
    fn connect(&self) -> Result<Connection, Error> {
        let hello = Hello {
            pid: process::id(),
            ..self.hello.clone()
        };
        let params = Params {
            tls: &self.tls,
            connect_timeout: self.connect_timeout,
            io_timeout: self.io_timeout,
            hello: &hello,
        };
        for server in &self.servers {
            match Connection::open(&server.addr, server.name.clone(), &params) {
                Ok(conn) => {
                    if server.down_reported.swap(false, Ordering::Relaxed) {
                        log::info!("hsmlink-server at {} is reachable again", server.addr.text);
                    }
                    return Ok(conn);
                }
                Err(reason) => {
                    if server.down_reported.swap(true, Ordering::Relaxed) {
                        log::debug!(
                            "cannot reach hsmlink-server at {}: {reason}",
                            server.addr.text
                        );
                    } else {
                        log::error!(
                            "cannot reach hsmlink-server at {}: {reason}",
                            server.addr.text
                        );
                    }
                }
            }
        }
        Err(Error::unreachable())
    }
}

/// The idle connections of the process that opened them.
struct Pool {
    pid: u32,
    connections: Vec<Connection>,
}

impl Pool {
    /// The idle connections of the calling process. In a forked child the
    /// parent's are dropped first: their sockets close in the child only,
    /// without a byte written (dropping a connection sends nothing; only
    /// [`Connection::close`] does).
    fn own(&mut self) -> &mut Vec<Connection> {
        let pid = process::id();
        if self.pid != pid {
            let inherited = std::mem::take(&mut self.connections);
            if !inherited.is_empty() {
                log::debug!(
                    "process {pid} was forked from {}: leaving its {} connection(s) to it",
                    self.pid,
                    inherited.len()
                );
            }
            drop(inherited);
            self.pid = pid;
        }
        &mut self.connections
    }
}

#[cfg(test)]
mod tests;
