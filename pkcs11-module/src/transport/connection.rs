//! One TLS connection to one hsmlink-server: connect, handshake, hello, then
//! request/response round trips, all blocking and all bounded by deadlines.
//!
//! Every wait ends by a deadline for the whole step (connect + handshake +
//! hello within `connect_timeout`, each request and its reply within
//! `io_timeout`), not per system call: a server dribbling a byte at a time
//! cannot stretch a call beyond its timeout.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hsmlink_protocol::frame::{self, HEADER_LEN};
use hsmlink_protocol::hello::HELLO_FRAME_VERSION;
use hsmlink_protocol::{
    FrameError, FrameHeader, FrameKind, Hello, HelloReply, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    Response, codec,
};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use zeroize::Zeroizing;

use crate::config::ServerAddr;
use crate::log;

/// What opening a connection needs besides the address.
pub struct Params<'a> {
    pub tls: &'a Arc<ClientConfig>,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub hello: &'a Hello,
}

/// How long a polite close may take.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

pub struct Connection {
    stream: StreamOwned<ClientConnection, Socket>,
    /// The protocol version negotiated by the hello.
    version: u16,
    /// `HOST:PORT` as configured, for messages.
    peer: String,
    io_timeout: Duration,
}

/// A round trip that failed; the connection must be dropped either way.
#[derive(Debug)]
pub enum Failure {
    /// The peer had closed the connection before a single byte of the reply
    /// arrived: the request was not answered, and it is safe to send it again
    /// on a fresh connection if this one had been sitting idle.
    Closed(String),
    /// Anything else: timeout, broken or mismatched reply. Not retried.
    Failed(String),
}

impl Connection {
    /// Connects to `server` (each resolved address in turn), completes the
    /// TLS handshake and the hello, all within the connect timeout; requests
    /// afterwards run under the I/O timeout. The error is a one-line reason
    /// for the log.
    pub fn open(
        server: &ServerAddr,
        name: ServerName<'static>,
        params: &Params<'_>,
    ) -> Result<Self, String> {
        let deadline = Instant::now() + params.connect_timeout;
        let tcp = connect_tcp(server, deadline, params.connect_timeout)?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("socket setup failed: {e}"))?;
        let sock = Socket { tcp, deadline };

        let conn = ClientConnection::new(Arc::clone(params.tls), name)
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        let mut stream = StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| {
                format!(
                    "TLS handshake failed: {}",
                    io_reason(&e, params.connect_timeout)
                )
            })?;
        }

        // With TLS 1.3 the server checks our certificate after our side of
        // the handshake is complete: a refusal arrives as an alert on this
        // first read, and becomes an error here (bounded by the timeout).
        frame::write_frame(
            &mut stream,
            FrameKind::Hello,
            HELLO_FRAME_VERSION,
            0,
            params.hello,
        )
        .map_err(|e| {
            format!(
                "sending hello failed: {}",
                frame_reason(&e, params.connect_timeout)
            )
        })?;
        let (header, reply) = frame::read_message::<_, HelloReply>(
            &mut stream,
            FrameKind::HelloReply,
            HELLO_FRAME_VERSION,
        )
        .map_err(|e| {
            format!(
                "no hello reply: {}",
                frame_reason(&e, params.connect_timeout)
            )
        })?;
        if header.request_id != 0 {
            return Err(format!(
                "protocol error: hello reply with request id {}",
                header.request_id
            ));
        }
        let version = match reply {
            HelloReply::Accepted {
                version,
                server: software,
                tenant,
            } => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                    return Err(format!(
                        "protocol error: the server chose version {version}, we speak \
                         {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}"
                    ));
                }
                log::debug!(
                    "connected to {} ({software}, tenant {tenant}, protocol {version})",
                    server.text
                );
                version
            }
            HelloReply::Rejected { reason } => {
                return Err(format!("the server refused this client: {reason}"));
            }
        };

        Ok(Self {
            stream,
            version,
            peer: server.text.clone(),
            io_timeout: params.io_timeout,
        })
    }

    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Sends one request (its encoded body) with `id` and reads the response
    /// with the same id.
    pub fn round_trip(&mut self, id: u64, body: &[u8]) -> Result<Response, Failure> {
        self.stream.sock.deadline = Instant::now() + self.io_timeout;
        let body_len = u32::try_from(body.len()).map_err(|_| {
            Failure::Failed(format!("request of {} bytes is too large", body.len()))
        })?;
        let header = FrameHeader {
            body_len,
            version: self.version,
            kind: FrameKind::Request,
            request_id: id,
        };
        // The frame may carry a PIN or key material: wiped when dropped.
        let mut bytes = Zeroizing::new(Vec::with_capacity(HEADER_LEN + body.len()));
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(body);
        if let Err(e) = self
            .stream
            .write_all(&bytes)
            .and_then(|()| self.stream.flush())
        {
            let reason = format!(
                "sending the request failed: {}",
                io_reason(&e, self.io_timeout)
            );
            return Err(if is_timeout(&e) {
                Failure::Failed(reason)
            } else {
                Failure::Closed(reason)
            });
        }

        let mut reader = Counting {
            inner: &mut self.stream,
            count: 0,
        };
        let (header, body) = match frame::read_frame(&mut reader) {
            // The reply may carry attribute values or outputs: wiped too.
            Ok((header, body)) => (header, Zeroizing::new(body)),
            Err(e) => {
                let reason = frame_reason(&e, self.io_timeout);
                return Err(if reader.count == 0 && is_closed(&e) {
                    Failure::Closed(reason)
                } else {
                    Failure::Failed(reason)
                });
            }
        };
        header
            .expect(FrameKind::Response, self.version)
            .map_err(|e| Failure::Failed(format!("protocol error: {e}")))?;
        if header.request_id != id {
            return Err(Failure::Failed(format!(
                "protocol error: reply to request {} where {id} was expected",
                header.request_id
            )));
        }
        codec::decode::<Response>(&body)
            .map_err(|e| Failure::Failed(format!("protocol error: {e}")))
    }

    /// Ends the connection politely (TLS close_notify, never waiting for an
    /// answer). Only for connections of this process: after `fork()` the
    /// parent's connections are never written to.
    /// Whether the server has closed this idle connection (an end of
    /// stream, a reset or unexpected bytes are waiting on the socket): one
    /// non-blocking peek, no byte consumed.
    pub fn closed_by_peer(&self) -> bool {
        let tcp = &self.stream.sock.tcp;
        if tcp.set_nonblocking(true).is_err() {
            return true;
        }
        let mut byte = [0u8; 1];
        let closed = match tcp.peek(&mut byte) {
            // An idle connection has nothing to read: bytes are a TLS alert
            // (close_notify) or worse.
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        closed || tcp.set_nonblocking(false).is_err()
    }

    pub fn close(mut self) {
        self.stream.sock.deadline = Instant::now() + CLOSE_TIMEOUT;
        self.stream.conn.send_close_notify();
        while self.stream.conn.wants_write() {
            match self.stream.conn.write_tls(&mut self.stream.sock) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn connect_tcp(
    server: &ServerAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (server.host.as_str(), server.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", server.host))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        let Some(remaining) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match TcpStream::connect_timeout(addr, remaining) {
            Ok(sock) => return Ok(sock),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) => io_reason(&e, timeout),
        None if addrs.is_empty() => format!("{} resolves to no address", server.host),
        None => format!("no connection within {} ms", timeout.as_millis()),
    })
}

/// The TCP stream under TLS: each read and write may only wait until
/// `deadline`, however many of them one TLS record takes.
struct Socket {
    tcp: TcpStream,
    deadline: Instant,
}

impl Socket {
    fn remaining(&self) -> io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.remaining()?))?;
        self.tcp.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.remaining()?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The peer closed (or reset) the connection.
fn is_closed(e: &FrameError) -> bool {
    match e {
        FrameError::Closed => true,
        FrameError::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

fn io_reason(e: &io::Error, timeout: Duration) -> String {
    if is_timeout(e) {
        format!("no answer within {} ms", timeout.as_millis())
    } else {
        e.to_string()
    }
}

fn frame_reason(e: &FrameError, timeout: Duration) -> String {
    match e {
        FrameError::Io(e) => io_reason(e, timeout),
        FrameError::Closed => "the server closed the connection".to_owned(),
        other => format!("protocol error: {other}"),
    }
}

/// Counts the bytes read, to tell "closed before the reply" from "broken
/// in the middle of the reply".
struct Counting<'a, R> {
    inner: &'a mut R,
    count: usize,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n;
        Ok(n)
    }
}
