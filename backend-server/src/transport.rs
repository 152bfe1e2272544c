//! One tenant connection, from TCP to the last reply.
//!
//! 1. TLS handshake (client certificate required), within the handshake
//!    timeout; the tenant comes from the verified certificate.
//! 2. The client's `Hello`, answered with `HelloReply` (also within the
//!    handshake timeout). A certificate that names no known tenant, or no
//!    common protocol version, gets `Rejected` and the connection closes.
//! 3. Request frames. A request that cannot block is answered in the read
//!    loop; any other runs on the blocking pool, at most
//!    `max_in_flight_per_connection` at a time ([`crate::scheduling`]);
//!    replies go through a channel to one writer task, so they may leave
//!    out of order.
//!
//! Every accepted connection is tracked by the registry ([`Live`]): a
//! revoked certificate or a disabled tenant cuts it at once (the requests
//! under way are dropped, the connection closes without a reply). Revoked
//! certificates already fail the handshake ([`crate::tls`]).
//!
//! Limits ([`crate::ratelimit`]): at most `max_connections` connections on
//! the server (more are closed at once, before the handshake) and
//! `max_connections_per_tenant` per tenant (more get a hello refusal and
//! one log line; other tenants are not affected). PIN-checking calls go
//! through the per-source limit on wrong PINs
//! ([`crate::calls::login::handle_throttled`]).
//!
//! A frame the server cannot read (wrong kind or version, oversize, body that
//! does not decode) means a broken peer: one warning, then the connection is
//! closed once the replies already under way are written. Nothing else is
//! affected.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use cryptoki_sys::{CKR_DEVICE_ERROR, CKR_GENERAL_ERROR};
use hsmlink_protocol::frame::{self, HEADER_LEN};
use hsmlink_protocol::hello::{self, HELLO_FRAME_VERSION};
use hsmlink_protocol::{
    CodecError, FrameError, FrameHeader, FrameKind, Hello, HelloReply, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION, Request, Response, codec,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, error, info, warn};

use crate::dispatch::{ClientContext, ServerState};
use crate::identity::{self, PeerIdentity};
use crate::ratelimit::{ConnectionLimits, LoginThrottle, TenantSlot};
use crate::registry::Live;
use crate::scheduling;
use crate::sessions::AppKey;

/// "hsmlink-server 0.1.0", sent in `HelloReply::Accepted`.
pub const SERVER_SOFTWARE: &str = concat!("hsmlink-server ", env!("CARGO_PKG_VERSION"));

/// What every connection shares.
pub(crate) struct Shared {
    pub state: Arc<ServerState>,
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
    pub max_in_flight: usize,
    pub limits: Arc<ConnectionLimits>,
    pub throttle: Arc<LoginThrottle>,
}

impl std::fmt::Debug for Shared {
    // TlsAcceptor has no Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Reading a frame failed.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Codec(#[from] CodecError),
}

/// Serves one accepted TCP connection until it closes or the server shuts
/// down. Never fails: every outcome is logged here.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    conn: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let live = shared.state.registry.live().clone();
    let refused = || {
        live.metrics
            .connections_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
    let _server_slot = match shared.limits.open() {
        Ok(slot) => slot,
        Err(refusal) => {
            refused();
            warn!(conn, %peer, "connection refused before the handshake: {refusal}");
            return;
        }
    };
    let deadline = Instant::now() + shared.handshake_timeout;
    let handshake = tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => return,
        result = timeout_at(deadline, shared.acceptor.accept(tcp)) => result,
    };
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            refused();
            info!(conn, %peer, reason = %e, "connection refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            refused();
            info!(conn, %peer, "connection refused: TLS handshake timed out");
            return;
        }
    };
    let identity = identity::identify_connection(tls.get_ref().1);

    let hello = tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => return,
        result = timeout_at(deadline, read_hello(&mut tls)) => result,
    };
    let hello = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(ReadError::Closed)) => {
            debug!(conn, %peer, "connection closed before the hello");
            return;
        }
        Ok(Err(e)) => {
            let tenant = tenant_of(&identity);
            warn!(conn, %peer, tenant, "closing connection: bad hello: {e}");
            return;
        }
        Err(_) => {
            let tenant = tenant_of(&identity);
            info!(conn, %peer, tenant, "connection refused: no hello within the handshake timeout");
            return;
        }
    };
    // Client-chosen text: short and printable before it reaches a log line.
    let client = printable(&hello.client);

    let verdict =
        admit(&shared.state, identity, &hello).and_then(|(version, identity)| {
            match shared.limits.admit(&identity.tenant) {
                Ok(slot) => Ok((version, identity, slot)),
                Err(refusal) => Err(format!("tenant {:?}: {refusal}", identity.tenant.as_str())),
            }
        });
    let reply = match &verdict {
        Ok((version, identity, _)) => HelloReply::Accepted {
            version: *version,
            server: SERVER_SOFTWARE.to_owned(),
            tenant: identity.tenant.to_string(),
        },
        Err(reason) => HelloReply::Rejected {
            reason: reason.clone(),
        },
    };
    let sent = timeout_at(deadline, write_hello_reply(&mut tls, &reply)).await;
    let (version, identity, _tenant_slot): (u16, PeerIdentity, TenantSlot) = match verdict {
        Ok(admitted) => admitted,
        Err(reason) => {
            refused();
            warn!(conn, %peer, %client, "connection refused: {reason}");
            let _ = timeout_at(deadline, tls.shutdown()).await;
            return;
        }
    };
    if !matches!(sent, Ok(Ok(()))) {
        debug!(conn, %peer, "could not send the hello reply");
        return;
    }

    let ctx = Arc::new(ClientContext {
        connection: conn,
        peer,
        identity,
        app_instance: hello.app_instance,
        pid: hello.pid,
        client,
    });
    info!(
        conn,
        %peer,
        tenant = %ctx.tenant(),
        client = %ctx.client,
        app_instance = %hex(&ctx.app_instance.0),
        pid = ctx.pid,
        version,
        subject = %ctx.identity.subject,
        fingerprint = %ctx.identity.fingerprint,
        "connection accepted"
    );
    // Sessions outlive connections; the application's connection count
    // tells the session layer when the application is gone.
    let _counted = ConnectionCount::new(shared.state.clone(), ctx.app_key(), ctx.pid);
    live.metrics
        .connections_accepted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tracked = live.track(conn, ctx.tenant().clone(), ctx.identity.fingerprint);
    let end = serve_requests(&shared, tls, &ctx, version, shutdown, tracked.cut.clone()).await;
    info!(conn, %peer, tenant = %ctx.tenant(), "connection closed: {end}");
}

/// Reads the first frame: a hello, in a hello frame.
async fn read_hello<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Hello, ReadError> {
    let (header, body) = read_frame(reader).await?;
    header.expect(FrameKind::Hello, HELLO_FRAME_VERSION)?;
    Ok(codec::decode(&body)?)
}

/// The negotiated version and the client's identity, or why the connection
/// is refused (sent back in `HelloReply::Rejected`).
fn admit(
    state: &ServerState,
    identity: Result<PeerIdentity, identity::IdentityError>,
    hello: &Hello,
) -> Result<(u16, PeerIdentity), String> {
    let identity = identity.map_err(|e| e.to_string())?;
    let live: &Live = state.registry.live();
    if live.is_revoked(&identity.fingerprint) {
        return Err("the client certificate is revoked".to_owned());
    }
    match state.registry.any_tenant(&identity.tenant) {
        None => return Err(format!("unknown tenant {:?}", identity.tenant.as_str())),
        Some(t) if t.disabled => {
            return Err(format!("tenant {:?} is disabled", identity.tenant.as_str()));
        }
        Some(_) => {}
    }
    let version = hello::negotiate(hello.min_version, hello.max_version).ok_or_else(|| {
        format!(
            "no common protocol version: client speaks {}..={}, server {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
            hello.min_version, hello.max_version
        )
    })?;
    Ok((version, identity))
}

async fn write_hello_reply(
    tls: &mut TlsStream<TcpStream>,
    reply: &HelloReply,
) -> Result<(), FrameError> {
    let bytes = frame::encode_frame(FrameKind::HelloReply, HELLO_FRAME_VERSION, 0, reply)?;
    tls.write_all(&bytes).await?;
    tls.flush().await?;
    Ok(())
}

/// The request loop; returns why the connection ended.
async fn serve_requests(
    shared: &Shared,
    tls: TlsStream<TcpStream>,
    ctx: &Arc<ClientContext>,
    version: u16,
    mut shutdown: watch::Receiver<bool>,
    mut cut: watch::Receiver<bool>,
) -> String {
    let (mut reader, writer) = tokio::io::split(tls);
    let (replies, outgoing) = mpsc::channel::<Vec<u8>>(shared.max_in_flight);
    let permits = Arc::new(Semaphore::new(shared.max_in_flight));
    // The writer and every request task: dropping the set aborts them all.
    let mut tasks = JoinSet::new();
    tasks.spawn(write_replies(writer, outgoing, ctx.connection));

    let end = loop {
        while let Some(done) = tasks.try_join_next() {
            log_task_failure(done, ctx);
        }
        let frame = tokio::select! {
            biased;
            _ = cut.wait_for(|cut| *cut) => None,
            _ = shutdown.wait_for(|stop| *stop) => break "server shutting down".to_owned(),
            frame = read_frame(&mut reader) => Some(frame),
        };
        let Some(frame) = frame else {
            // Revoked or disabled: nothing more goes out, not even the
            // replies under way.
            tasks.shutdown().await;
            return "cut: certificate revoked or tenant disabled".to_owned();
        };
        let (header, request) = match frame.and_then(|(header, body)| {
            header.expect(FrameKind::Request, version)?;
            Ok((header, codec::decode::<Request>(&body)?))
        }) {
            Ok(decoded) => decoded,
            Err(ReadError::Closed) => break "closed by the client".to_owned(),
            Err(ReadError::Io(e)) => break format!("i/o error: {e}"),
            Err(e) => {
                warn!(
                    conn = ctx.connection,
                    peer = %ctx.peer,
                    tenant = %ctx.tenant(),
                    "closing connection: unreadable frame: {e}"
                );
                break format!("unreadable frame: {e}");
            }
        };
        // Back-pressure: no more reading while the connection has its
        // maximum of requests in flight.
        let permit = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break "server shutting down".to_owned(),
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed.
                Err(_) => break "internal error".to_owned(),
            },
        };
        // What may block (store commits, PIN hashing, disk flushes of the
        // audit log) runs on the blocking pool, in a task of its own, so
        // that the connection reads on; the rest is answered here, before
        // the next frame is read ([`scheduling`]). The module sends one
        // request at a time per connection, so nothing waits behind it.
        let (id, function) = (header.request_id, request.function_name());
        let state = &shared.state;
        if state.in_process(ctx.tenant()) && scheduling::runs_inline(&request, audit_flushes(state))
        {
            let response = answer_and_scrub(state, &shared.throttle, ctx, request);
            drop(permit);
            let reply = reply_for(state, ctx, version, id, function, response);
            if replies.send(reply).await.is_err() {
                break "writer gone".to_owned();
            }
            continue;
        }
        let state = state.clone();
        let throttle = shared.throttle.clone();
        let ctx = ctx.clone();
        let replies = replies.clone();
        // Straight onto the pool (no async task in between, whose spawn
        // and wake-up cost a thread wake each); the reply goes to the
        // writer from there.
        tasks.spawn_blocking(move || {
            let _permit = permit;
            let response = answer_and_scrub(&state, &throttle, &ctx, request);
            let reply = reply_for(&state, &ctx, version, id, function, response);
            // An error here means the writer is gone: the connection is closing.
            let _ = replies.blocking_send(reply);
        });
    };

    // Let the requests under way finish and their replies go out; the writer
    // ends when the last sender is dropped.
    drop(replies);
    while let Some(done) = tasks.join_next().await {
        log_task_failure(done, ctx);
    }
    end
}

/// [`answer`], then the stack below is scrubbed: key bytes and schedules
/// the engines left in popped frames are wiped.
fn answer_and_scrub(
    state: &ServerState,
    throttle: &Arc<LoginThrottle>,
    ctx: &ClientContext,
    request: Request,
) -> Response {
    let response = answer(state, throttle, ctx, request);
    hsmlink_crypto::stack::scrub();
    response
}

/// Counts and logs an answer, and frames it.
fn reply_for(
    state: &ServerState,
    ctx: &ClientContext,
    version: u16,
    id: u64,
    function: &str,
    response: Response,
) -> Vec<u8> {
    state.registry.live().metrics.request(response.rv.0);
    debug!(
        conn = ctx.connection,
        tenant = %ctx.tenant(),
        request_id = id,
        function,
        rv = %format_args!("{:#x}", response.rv.0),
        "request"
    );
    encode_response(version, id, &response)
}

/// True if an audited call waits for a disk flush before its reply.
fn audit_flushes(state: &ServerState) -> bool {
    state.audit().is_some_and(|audit| audit.flushes_to_disk())
}

/// Counts one connection of an application for as long as it lives.
struct ConnectionCount {
    state: Arc<ServerState>,
    key: AppKey,
    pid: u32,
}

impl ConnectionCount {
    fn new(state: Arc<ServerState>, key: AppKey, pid: u32) -> Self {
        state.sessions.connection_opened(&key, pid);
        Self { state, key, pid }
    }
}

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        self.state
            .sessions
            .connection_closed(&self.key, self.pid, std::time::Instant::now());
    }
}

/// [`crate::dispatch::handle`] (through the per-source PIN limit), with a panic
/// turned into `CKR_GENERAL_ERROR` so that the client still gets an answer
/// (and the server a log line).
fn answer(
    state: &ServerState,
    throttle: &Arc<LoginThrottle>,
    ctx: &ClientContext,
    request: Request,
) -> Response {
    let function = request.function_name();
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        crate::calls::login::handle_throttled(state, throttle, ctx, request)
    })) {
        Ok(response) => response,
        Err(_) => {
            let (conn, tenant) = (ctx.connection, ctx.tenant());
            error!(conn, %tenant, function, "request handler panicked");
            Response::error(CKR_GENERAL_ERROR)
        }
    }
}

fn encode_response(version: u16, request_id: u64, response: &Response) -> Vec<u8> {
    match frame::encode_frame(FrameKind::Response, version, request_id, response) {
        Ok(bytes) => bytes,
        Err(e) => {
            error!(request_id, "cannot encode a response: {e}");
            let fallback = Response::error(CKR_DEVICE_ERROR);
            // An empty response always encodes; an empty frame would make
            // the client's read fail, which is the best left to do.
            frame::encode_frame(FrameKind::Response, version, request_id, &fallback)
                .unwrap_or_default()
        }
    }
}

/// The single writer of a connection: frames in channel order, flushed when
/// the channel runs dry; close_notify when every sender is gone.
async fn write_replies<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    conn: u64,
) {
    let result: io::Result<()> = async {
        while let Some(frame) = outgoing.recv().await {
            writer.write_all(&frame).await?;
            while let Ok(frame) = outgoing.try_recv() {
                writer.write_all(&frame).await?;
            }
            writer.flush().await?;
        }
        writer.shutdown().await
    }
    .await;
    if let Err(e) = result {
        debug!(conn, "writing replies failed: {e}");
    }
}

fn log_task_failure(done: Result<(), tokio::task::JoinError>, ctx: &ClientContext) {
    if let Err(e) = done
        && e.is_panic()
    {
        error!(conn = ctx.connection, tenant = %ctx.tenant(), "connection task panicked");
    }
}

/// Reads one frame: header, then exactly `body_len` bytes (at most
/// `MAX_FRAME_BODY`, checked by `FrameHeader::parse` before any allocation;
/// the buffer grows with the bytes that really arrive).
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<(FrameHeader, Vec<u8>), ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]).await {
            Ok(0) if filled == 0 => return Err(ReadError::Closed),
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => filled += n,
            // A peer that goes away without close_notify, between frames.
            Err(e) if filled == 0 && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ReadError::Closed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let header = FrameHeader::parse(&header)?;
    let len =
        usize::try_from(header.body_len).map_err(|_| FrameError::TooLarge(header.body_len))?;
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    reader
        .take(u64::from(header.body_len))
        .read_to_end(&mut body)
        .await?;
    if body.len() != len {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok((header, body))
}

fn tenant_of(identity: &Result<PeerIdentity, identity::IdentityError>) -> &str {
    match identity {
        Ok(identity) => identity.tenant.as_str(),
        Err(_) => "-",
    }
}

/// At most 100 characters, control characters escaped.
fn printable(text: &str) -> String {
    text.chars()
        .take(100)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_or_refused() {
        let bytes = frame::encode_frame(FrameKind::Request, 1, 9, &Request::Finalize).unwrap();
        let (header, body) = read_frame(&mut &bytes[..]).await.unwrap();
        assert_eq!(header.request_id, 9);
        assert_eq!(codec::decode::<Request>(&body).unwrap(), Request::Finalize);

        assert!(matches!(
            read_frame(&mut &[][..]).await,
            Err(ReadError::Closed)
        ));
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read_frame(&mut &cut[..]).await,
            Err(ReadError::Io(_))
        ));
        let cut = &bytes[..5];
        assert!(matches!(
            read_frame(&mut &cut[..]).await,
            Err(ReadError::Io(_))
        ));

        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            read_frame(&mut &huge[..]).await,
            Err(ReadError::Frame(FrameError::TooLarge(_)))
        ));
        let mut kind = bytes.clone();
        kind[6..8].copy_from_slice(&99u16.to_be_bytes());
        assert!(matches!(
            read_frame(&mut &kind[..]).await,
            Err(ReadError::Frame(FrameError::UnknownKind(99)))
        ));
    }

    #[test]
    fn client_text_is_made_printable() {
        assert_eq!(printable("hsmlink-pkcs11 0.1.0"), "hsmlink-pkcs11 0.1.0");
        assert_eq!(printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(printable(&"x".repeat(500)).len(), 100);
    }

    #[test]
    fn server_software_names_the_version() {
        assert_eq!(
            SERVER_SOFTWARE,
            format!("hsmlink-server {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
