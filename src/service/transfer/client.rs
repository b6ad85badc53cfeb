//! The `no_std` transfer client: push a file, fetch a file, list, stat, delete.
//!
//! [`TransferClient`] owns the framing of one connection to a transfer server (a
//! frame receive storage and a staging buffer of one frame body); the caller owns
//! the smoltcp socket and connects it (with [`TcpClient`](crate::net::TcpClient),
//! for instance). Each request is an operation object borrowed from the client
//! ([`PutFile`], [`GetFile`], [`ListFiles`], [`StatFile`], [`DeleteFile`]) whose
//! `poll(socket, now)` does what can be done without waiting and returns
//! `Poll::Pending` until the answer is complete. The HELLO exchange happens on the
//! first poll of a connection.
//!
//! File bytes come from a [`FileSource`] and go to a [`FileSink`], read and written
//! one frame at a time at explicit offsets, so a file in flash, on an SD card or in
//! RAM all work, and a progress callback sees `(done, total)` after every frame.
//! Uploads and downloads resume where an earlier attempt stopped, and both ends
//! check the CRC-32 of the whole file.

use core::fmt;
use core::task::Poll;

use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

use super::server::{SetupError, max_body_for};
use crate::net::{FramedStream, RecvError, SendError};
use crate::store::{Entry, FileName, FileStat};
use crate::time::later;
use crate::wire::crc32::Crc32;
use crate::wire::frame::{HeaderFormat, ReadError};
use crate::wire::transfer::{
    DATA_HEADER_LEN, ErrorCode, MIN_MAX_BODY, Message, MessageType, PROTOCOL_VERSION,
    TransferError, emit_data_header,
};

/// Bytes of local work (hashing a file) one poll does at most before it returns,
/// so a large file does not hold up the caller's main loop.
const LOCAL_WORK_PER_POLL: u64 = 64 * 1024;

/// Why a local file could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LocalError {
    /// The source could not be read.
    Read,
    /// The source ended before the size it announced.
    SourceShort {
        /// Where it ended.
        at: u64,
    },
    /// The sink could not be written.
    Write,
    /// The sink has no room for the file.
    NoSpace,
}

impl fmt::Display for LocalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read => f.write_str("local file could not be read"),
            Self::SourceShort { at } => write!(f, "local file ended early, at {at}"),
            Self::Write => f.write_str("local file could not be written"),
            Self::NoSpace => f.write_str("no room for the file"),
        }
    }
}

impl core::error::Error for LocalError {}

/// Where an upload's bytes come from: a file of fixed size, read at offsets.
pub trait FileSource {
    /// The file's size in bytes; it must not change during the upload.
    fn size(&self) -> u64;

    /// Copies bytes from `offset` on into `buf` and returns how many. Fills `buf`
    /// unless the file ends first.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError>;
}

/// A file in memory (RAM or memory-mapped flash).
impl FileSource for &[u8] {
    fn size(&self) -> u64 {
        u64::try_from(self.len()).unwrap_or(u64::MAX)
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let rest = usize::try_from(offset)
            .ok()
            .and_then(|offset| self.get(offset..))
            .unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }
}

impl<T: FileSource + ?Sized> FileSource for &mut T {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        (**self).read(offset, buf)
    }
}

/// Where a download's bytes go: written in order, kept aside until the checksum
/// matched, so a failed download never looks like a good file.
pub trait FileSink {
    /// How many bytes an earlier attempt left, and their CRC-32, for a resumed
    /// download. The default holds nothing.
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        Ok((0, 0))
    }

    /// Forgets every byte held: the download starts again from 0 (or failed).
    fn restart(&mut self) -> Result<(), LocalError>;

    /// Appends `bytes`; `offset` is always the number of bytes held so far.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError>;

    /// Every byte is in and the CRC-32 matched: make the file real.
    fn complete(&mut self, _stat: FileStat) -> Result<(), LocalError> {
        Ok(())
    }
}

impl<T: FileSink + ?Sized> FileSink for &mut T {
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        (**self).held()
    }

    fn restart(&mut self) -> Result<(), LocalError> {
        (**self).restart()
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        (**self).write(offset, bytes)
    }

    fn complete(&mut self, stat: FileStat) -> Result<(), LocalError> {
        (**self).complete(stat)
    }
}

/// A [`FileSink`] into a caller's buffer: a config file fetched into RAM.
///
/// What it holds survives a failed attempt, so fetching again with resume
/// continues where the last one stopped.
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
    complete: bool,
}

impl<'a> SliceSink<'a> {
    /// An empty sink over `buf`; the file may be as long as `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            complete: false,
        }
    }

    /// The bytes received so far.
    pub fn data(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Whether a download finished with a matching checksum.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}

impl FileSink for SliceSink<'_> {
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        let len = u64::try_from(self.len).unwrap_or(u64::MAX);
        Ok((len, crate::wire::crc32::crc32(self.data())))
    }

    fn restart(&mut self) -> Result<(), LocalError> {
        self.len = 0;
        self.complete = false;
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        if usize::try_from(offset).ok() != Some(self.len) {
            return Err(LocalError::Write);
        }
        let end = self
            .len
            .checked_add(bytes.len())
            .ok_or(LocalError::NoSpace)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(LocalError::NoSpace)?
            .copy_from_slice(bytes);
        self.len = end;
        self.complete = false;
        Ok(())
    }

    fn complete(&mut self, _stat: FileStat) -> Result<(), LocalError> {
        self.complete = true;
        Ok(())
    }
}

/// How the server broke the protocol. The client closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame body that is not a valid message.
    Malformed(TransferError),
    /// A valid message at a moment it makes no sense.
    Unexpected(MessageType),
    /// A frame header over our `max_body`.
    FrameTooLarge {
        /// The length announced.
        len: u32,
        /// Our limit.
        max: u32,
    },
    /// HELLO_OK chose a version this client does not speak.
    Version(u8),
    /// An offset that is not where the transfer stands.
    BadOffset {
        /// The offset that was due.
        expected: u64,
        /// The offset the server sent.
        got: u64,
    },
    /// More DATA than the file's size.
    TooMuchData,
    /// An answer that contradicts the request (PUT_DONE of another size or CRC,
    /// a LIST_END count that is not the number of entries).
    Mismatch,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed message: {e}"),
            Self::Unexpected(t) => write!(f, "unexpected message {t:?}"),
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes over our limit {max}")
            }
            Self::Version(v) => write!(f, "server chose protocol version {v}"),
            Self::BadOffset { expected, got } => {
                write!(f, "offset {got} where {expected} was due")
            }
            Self::TooMuchData => f.write_str("more data than the file's size"),
            Self::Mismatch => f.write_str("answer contradicts the request"),
        }
    }
}

/// Why a transfer operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered ERROR (`PROTOCOL.md` section 8 says what `value` is).
    /// The connection stays usable.
    Refused {
        /// The error code.
        code: ErrorCode,
        /// Its value.
        value: u64,
    },
    /// The server answered ERROR with a code this version does not know.
    RefusedUnknown {
        /// The raw code.
        code: u8,
    },
    /// The server broke the protocol; the client closed the connection.
    Protocol(ProtocolError),
    /// A download arrived whole but its CRC-32 is not the server's: the sink was
    /// told to forget it.
    ChecksumMismatch {
        /// The CRC-32 the server announced.
        expected: u32,
        /// The CRC-32 of what arrived.
        computed: u32,
    },
    /// The local file failed.
    Local(LocalError),
    /// The connection closed or was reset.
    Disconnected,
    /// No byte moved for the client's timeout; the connection was reset.
    Timeout,
    /// The connection is in an unknown state (an earlier operation was dropped or
    /// failed half-way): connect again and call [`TransferClient::reset`].
    Unusable,
}

impl ClientError {
    /// The server's error code, when the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { code, value } => write!(f, "server refused: {code} ({value})"),
            Self::RefusedUnknown { code } => write!(f, "server refused with code 0x{code:02x}"),
            Self::Protocol(e) => write!(f, "server broke the protocol: {e}"),
            Self::ChecksumMismatch { expected, computed } => write!(
                f,
                "checksum mismatch: server says {expected:08x}, received {computed:08x}"
            ),
            Self::Local(e) => e.fmt(f),
            Self::Disconnected => f.write_str("connection closed"),
            Self::Timeout => f.write_str("server silent for too long"),
            Self::Unusable => f.write_str("connection in an unknown state; reconnect"),
        }
    }
}

impl core::error::Error for ClientError {}

impl From<LocalError> for ClientError {
    fn from(e: LocalError) -> Self {
        Self::Local(e)
    }
}

impl From<ProtocolError> for ClientError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

/// What a PUT asks for besides the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PutOptions {
    /// Continue a partial upload of this name the server holds, if its bytes are
    /// this file's (the client checks their CRC-32 first).
    pub resume: bool,
    /// The CRC-32 of the whole file, if known; otherwise the client reads the
    /// source once to compute it before sending the PUT.
    pub crc: Option<u32>,
}

impl PutOptions {
    /// Start from 0, compute the CRC-32.
    pub const FRESH: Self = Self {
        resume: false,
        crc: None,
    };
    /// Resume a partial if there is one, compute the CRC-32.
    pub const RESUME: Self = Self {
        resume: true,
        crc: None,
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Connected, nothing said yet: HELLO goes first.
    Fresh,
    HelloSent,
    Ready {
        server_max_body: u32,
    },
    /// Unusable until [`TransferClient::reset`].
    Broken,
}

/// The client end of one connection to a transfer server.
///
/// Each request is an operation borrowed from the client; poll it after every
/// interface poll until it is ready. A microcontroller pushing its boot log, here
/// over the in-process link:
///
/// ```
/// use core::task::Poll;
/// use smoltcp::iface::SocketSet;
/// use smoltcp::socket::tcp;
/// use smoltcp::time::Duration;
/// use smolsock::net::{PortAllocator, Service, TcpClient, TcpServer};
/// use smolsock::runner::sim::{SERVER_V4, SimConfig, SimNet};
/// use smolsock::service::transfer::{
///     PutOptions, SharedStore, TransferClient, TransferServer, UploadLease,
/// };
/// use smolsock::store::{FileName, RamStore};
///
/// # let socket = || tcp::Socket::new(
/// #     tcp::SocketBuffer::new(vec![0; 4096]),
/// #     tcp::SocketBuffer::new(vec![0; 4096]),
/// # );
/// let mut net: SimNet = SimNet::new(SimConfig::new(1), SocketSet::new(vec![]), SocketSet::new(vec![]));
/// // A server with one slot over a RAM store...
/// let shared = SharedStore::new(RamStore::<4, 8192>::new(), [UploadLease::EMPTY; 1]);
/// let slot = TransferServer::new(&shared, [0u8; 1028], [0u8; 1028])?;
/// let mut server = TcpServer::new(2121, [net.server.sockets.add(socket())], [slot]);
/// let now = net.now();
/// server.poll(&mut net.server.sockets, now);
///
/// // ...and the client: connect, then push the log with a progress callback.
/// let handle = net.client.sockets.add(socket());
/// let (tcp, cx) = net.client.socket_and_context::<tcp::Socket>(handle).unwrap();
/// TcpClient::new(Duration::from_secs(3)).connect(cx, tcp, (SERVER_V4, 2121), &mut PortAllocator::<4>::new(1), now)?;
/// let mut client = TransferClient::new([0u8; 1028], [0u8; 1028])?;
/// let log = b"boot ok\n".repeat(500);
/// let mut put = client.put(FileName::new("boot.log")?, &log[..], PutOptions::RESUME, |done, total| {
///     println!("{}%", done * 100 / total.max(1));
/// });
/// // The main loop: after every interface poll, poll the operation.
/// let stored = net.run_services(&mut server, &mut (), Duration::from_secs(60), |_, _, net| {
///     let now = net.now();
///     match put.poll(net.client.sockets.get_mut(handle), now) {
///         Poll::Ready(result) => Some(result),
///         Poll::Pending => None,
///     }
/// })??;
/// assert_eq!(stored.size, 4000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `B` is the buffer type of the frame receive storage (the largest body the client
/// accepts is its length minus 4: a download's DATA frames are that large at most)
/// and of the staging buffer (the largest DATA frame it sends: uploads go in chunks
/// of its length minus 9, or less if the server accepts less). The framing shares
/// one limit both ways, so no frame sent is over the receive limit either: staging
/// longer than the receive storage minus 4 is never used.
pub struct TransferClient<B> {
    stream: FramedStream<B>,
    staging: B,
    /// Length of the body in `staging` still going out (0: none).
    outgoing: usize,
    max_body: u32,
    link: Link,
    /// Whether the connection carries no half-finished request.
    in_sync: bool,
    timeout: Option<Duration>,
    last_progress: Option<Instant>,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> TransferClient<B> {
    /// A client receiving frames into `receive` and staging outgoing frames in
    /// `staging`. Fails unless `receive` holds a 4-byte header and a 128-byte
    /// body, and `staging` 128 bytes.
    ///
    /// A client gives up on a server that moves no byte for 60 s (see
    /// [`with_timeout`](Self::with_timeout)).
    pub fn new(receive: B, staging: B) -> Result<Self, SetupError> {
        let len = receive.as_ref().len();
        let max_body = max_body_for(len).ok_or(SetupError::ReceiveStorageTooSmall { len })?;
        let staging_len = staging.as_ref().len();
        if staging_len < MIN_MAX_BODY as usize {
            return Err(SetupError::StagingTooSmall { len: staging_len });
        }
        let format = HeaderFormat::NETWORK.with_max_len(max_body)?;
        Ok(Self {
            stream: FramedStream::new(receive, format)?,
            staging,
            outgoing: 0,
            max_body,
            link: Link::Fresh,
            in_sync: true,
            timeout: Some(Duration::from_secs(60)),
            last_progress: None,
        })
    }

    /// The same client with another timeout for a silent server (`None`: wait
    /// forever).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts over on a new connection (after connecting the socket again).
    pub fn reset(&mut self) {
        self.stream.reset();
        self.outgoing = 0;
        self.link = Link::Fresh;
        self.in_sync = true;
        self.last_progress = None;
    }

    /// The largest frame body this client accepts (announced in HELLO).
    pub fn max_body(&self) -> u32 {
        self.max_body
    }

    /// The server's frame limit, once the HELLO exchange is done.
    pub fn server_max_body(&self) -> Option<u32> {
        match self.link {
            Link::Ready { server_max_body } => Some(server_max_body),
            _ => None,
        }
    }

    /// Framing counters of this client, over all its connections.
    pub fn stream_stats(&self) -> crate::net::StreamStats {
        self.stream.stats()
    }

    /// Uploads `source` as `name`, calling `progress(done, total)` as bytes go out.
    pub fn put<S: FileSource, P: FnMut(u64, u64)>(
        &mut self,
        name: FileName,
        source: S,
        options: PutOptions,
        progress: P,
    ) -> PutFile<'_, B, S, P> {
        let size = source.size();
        let step = match options.crc {
            Some(_) => PutStep::Request,
            None => PutStep::Hash {
                at: 0,
                crc: Crc32::new(),
            },
        };
        PutFile {
            client: self,
            exchange: PutExchange {
                source,
                progress,
                name,
                size,
                crc: options.crc.unwrap_or(0),
                resume: options.resume,
                step,
            },
            started: false,
        }
    }

    /// Downloads `name` into `sink`, calling `progress(done, total)` as bytes
    /// arrive. With `resume`, continues after the bytes the sink already holds if
    /// the server's copy starts with them.
    pub fn get<K: FileSink, P: FnMut(u64, u64)>(
        &mut self,
        name: FileName,
        sink: K,
        resume: bool,
        progress: P,
    ) -> GetFile<'_, B, K, P> {
        GetFile {
            client: self,
            exchange: GetExchange {
                sink,
                progress,
                name,
                resume,
                step: GetStep::Start,
            },
            started: false,
        }
    }

    /// Lists the server's files, calling `on_entry` for each; ends with their count.
    pub fn list<F: FnMut(Entry)>(&mut self, on_entry: F) -> ListFiles<'_, B, F> {
        ListFiles {
            client: self,
            exchange: ListExchange {
                on_entry,
                seen: 0,
                sent: false,
            },
            started: false,
        }
    }

    /// Size and CRC-32 of a stored file.
    pub fn stat(&mut self, name: FileName) -> StatFile<'_, B> {
        StatFile {
            client: self,
            exchange: SimpleExchange {
                request: SimpleRequest::Stat(name),
                sent: false,
            },
            started: false,
        }
    }

    /// Deletes a stored file (and any partial upload of it).
    pub fn delete(&mut self, name: FileName) -> DeleteFile<'_, B> {
        DeleteFile {
            client: self,
            exchange: SimpleExchange {
                request: SimpleRequest::Delete(name),
                sent: false,
            },
            started: false,
        }
    }

    /// Runs an exchange as far as it goes now.
    fn drive<E: Exchange>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
        exchange: &mut E,
        started: &mut bool,
    ) -> Poll<Result<E::Output, ClientError>> {
        if !*started {
            *started = true;
            if !self.in_sync {
                self.link = Link::Broken;
            }
        }
        if self.link == Link::Broken {
            return Poll::Ready(Err(ClientError::Unusable));
        }
        let before = self.moved();
        // Hashing a large file moves no byte but is progress all the same.
        let working = exchange.local_work();
        let result = self.run(socket, exchange);
        if self.moved() != before || working || self.last_progress.is_none() {
            self.last_progress = Some(now);
        }
        match result {
            Poll::Pending => {
                self.in_sync = exchange.in_sync();
                let deadline = self
                    .timeout
                    .zip(self.last_progress)
                    .map(|(timeout, last)| later(last, timeout));
                if deadline.is_some_and(|deadline| now >= deadline) {
                    socket.abort();
                    self.link = Link::Broken;
                    return Poll::Ready(Err(ClientError::Timeout));
                }
                Poll::Pending
            }
            Poll::Ready(Ok(output)) => {
                self.in_sync = true;
                self.last_progress = None;
                Poll::Ready(Ok(output))
            }
            Poll::Ready(Err(error)) => {
                self.last_progress = None;
                match error {
                    // An ERROR ends the request it answers, wherever it came.
                    ClientError::Refused { .. } => self.in_sync = true,
                    ClientError::Local(_) | ClientError::ChecksumMismatch { .. } => {
                        self.in_sync = exchange.in_sync();
                        if !self.in_sync {
                            self.link = Link::Broken;
                        }
                    }
                    ClientError::Protocol(_) | ClientError::RefusedUnknown { .. } => {
                        socket.close();
                        self.link = Link::Broken;
                    }
                    _ => self.link = Link::Broken,
                }
                Poll::Ready(Err(error))
            }
        }
    }

    /// When the operation in progress needs a poll even with no traffic: at once
    /// for local work, else the timeout.
    fn poll_at(&self, local_work: bool) -> Option<Instant> {
        if local_work {
            return Some(Instant::ZERO);
        }
        self.timeout
            .zip(self.last_progress)
            .map(|(timeout, last)| later(last, timeout))
    }

    fn moved(&self) -> u64 {
        let stats = self.stream.stats();
        stats.read.bytes.saturating_add(stats.write.bytes)
    }

    fn run<E: Exchange>(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        exchange: &mut E,
    ) -> Poll<Result<E::Output, ClientError>> {
        // Still connecting (the caller may start an operation right after
        // `connect`): nothing to do yet.
        if matches!(
            socket.state(),
            tcp::State::SynSent | tcp::State::SynReceived
        ) {
            return Poll::Pending;
        }
        loop {
            if self.outgoing > 0 {
                let body = self
                    .staging
                    .as_ref()
                    .get(..self.outgoing)
                    .unwrap_or_default();
                match self.stream.send_frame(socket, body) {
                    Ok(()) => self.outgoing = 0,
                    Err(SendError::WouldBlock) => return Poll::Pending,
                    Err(SendError::NotConnected) => {
                        return Poll::Ready(Err(ClientError::Disconnected));
                    }
                    Err(SendError::Frame(_)) => return Poll::Ready(Err(ClientError::Unusable)),
                }
            }
            if self.link == Link::Fresh {
                FramedStream::<B>::configure(socket);
                let hello = Message::Hello {
                    version: PROTOCOL_VERSION,
                    max_body: self.max_body,
                };
                self.outgoing = hello.emit(self.staging.as_mut()).unwrap_or(0);
                self.link = Link::HelloSent;
                continue;
            }
            let mut outbox = Outbox {
                staging: self.staging.as_mut(),
                outgoing: &mut self.outgoing,
                // The stream's writer shares the reader's limit: we send no frame
                // over our own `max_body` either.
                frame_limit: match self.link {
                    Link::Ready { server_max_body } => server_max_body.min(self.max_body),
                    _ => MIN_MAX_BODY,
                },
            };
            match self.stream.recv_frame(socket) {
                Ok(Some(frame)) => {
                    let message = match Message::parse(frame) {
                        Ok(message) => message,
                        Err(TransferError::UnknownErrorCode(code)) => {
                            return Poll::Ready(Err(ClientError::RefusedUnknown { code }));
                        }
                        Err(e) => return Poll::Ready(Err(ProtocolError::Malformed(e).into())),
                    };
                    if self.link == Link::HelloSent {
                        match message {
                            Message::HelloOk { version, max_body } => {
                                if version != PROTOCOL_VERSION {
                                    return Poll::Ready(
                                        Err(ProtocolError::Version(version).into()),
                                    );
                                }
                                self.link = Link::Ready {
                                    server_max_body: max_body,
                                };
                            }
                            Message::Error { code, value } => {
                                self.link = Link::Broken;
                                return Poll::Ready(Err(ClientError::Refused { code, value }));
                            }
                            other => {
                                return Poll::Ready(Err(ProtocolError::Unexpected(
                                    other.message_type(),
                                )
                                .into()));
                            }
                        }
                        continue;
                    }
                    match exchange.on_message(message, &mut outbox) {
                        Ok(Some(output)) => return Poll::Ready(Ok(output)),
                        Ok(None) => continue,
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
                Ok(None) => {}
                Err(RecvError::Frame(ReadError::Oversize { len, max })) => {
                    return Poll::Ready(Err(ProtocolError::FrameTooLarge { len, max }.into()));
                }
                Err(_) => return Poll::Ready(Err(ClientError::Disconnected)),
            }
            if !matches!(self.link, Link::Ready { .. }) {
                return Poll::Pending;
            }
            match exchange.next(&mut outbox) {
                Ok(Next::Staged) => continue,
                Ok(Next::Waiting) => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<B> fmt::Debug for TransferClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferClient")
            .field("max_body", &self.max_body)
            .field("link", &self.link)
            .field("in_sync", &self.in_sync)
            .field("outgoing", &self.outgoing)
            .finish_non_exhaustive()
    }
}

/// The staging buffer, as an exchange sees it: empty, ready for one frame.
struct Outbox<'a> {
    staging: &'a mut [u8],
    outgoing: &'a mut usize,
    /// The largest frame body that may be sent now.
    frame_limit: u32,
}

impl Outbox<'_> {
    fn send(&mut self, message: &Message<'_>) {
        // Staging holds at least 128 bytes and no request is longer than 79.
        *self.outgoing = message.emit(self.staging).unwrap_or(0);
    }

    /// Where the payload of the next DATA frame goes.
    fn data_room(&mut self) -> &mut [u8] {
        let frame = (self.frame_limit as usize).min(self.staging.len());
        self.staging
            .get_mut(DATA_HEADER_LEN..frame)
            .unwrap_or_default()
    }

    /// Sends the `n` payload bytes written into [`data_room`](Self::data_room)
    /// as DATA at `offset`.
    fn send_data(&mut self, offset: u64, n: usize) {
        if emit_data_header(self.staging, offset).is_ok() {
            *self.outgoing = DATA_HEADER_LEN.saturating_add(n);
        }
    }

    /// The whole staging buffer as scratch space for local work.
    fn scratch(&mut self) -> &mut [u8] {
        self.staging
    }
}

enum Next {
    /// A frame is staged: send it and go on.
    Staged,
    /// Nothing to do until the server says something (or the next poll).
    Waiting,
}

/// One request's side of the conversation.
trait Exchange {
    type Output;

    /// Local work, or the next frame to send. Called with nothing staged.
    fn next(&mut self, out: &mut Outbox<'_>) -> Result<Next, ClientError>;

    /// A message from the server. Called with nothing staged.
    fn on_message(
        &mut self,
        message: Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<Option<Self::Output>, ClientError>;

    /// Whether the connection could carry another request if this one stopped now.
    fn in_sync(&self) -> bool;

    /// Whether there is local work to do without waiting for the network.
    fn local_work(&self) -> bool {
        false
    }
}

fn unexpected<T>(message: &Message<'_>) -> Result<T, ClientError> {
    Err(ProtocolError::Unexpected(message.message_type()).into())
}

/// Feeds up to [`LOCAL_WORK_PER_POLL`] bytes of `source` from `*at` to `end` into
/// `crc`; `true` once `end` is reached.
fn hash_some<S: FileSource>(
    source: &mut S,
    scratch: &mut [u8],
    at: &mut u64,
    end: u64,
    crc: &mut Crc32,
) -> Result<bool, ClientError> {
    let mut budget = LOCAL_WORK_PER_POLL;
    while *at < end {
        if budget == 0 {
            return Ok(false);
        }
        let left = end.saturating_sub(*at).min(budget);
        let want = usize::try_from(left).map_or(scratch.len(), |left| left.min(scratch.len()));
        let chunk = scratch.get_mut(..want).unwrap_or_default();
        let n = source.read(*at, chunk)?;
        if n == 0 {
            return Err(LocalError::SourceShort { at: *at }.into());
        }
        crc.update(chunk.get(..n).unwrap_or_default());
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        *at = at.saturating_add(n);
        budget = budget.saturating_sub(n);
    }
    Ok(true)
}

#[derive(Clone, Copy, Debug)]
enum PutStep {
    /// Computing the whole file's CRC-32, at `at`.
    Hash { at: u64, crc: Crc32 },
    /// PUT to send.
    Request,
    /// Waiting for PUT_READY.
    AwaitReady,
    /// Checking that the server's partial `[0, end)` is ours.
    CheckPrefix {
        at: u64,
        end: u64,
        crc: Crc32,
        expected: u32,
    },
    /// DATA from `next` on to send.
    Send { next: u64 },
    /// Waiting for PUT_DONE.
    AwaitDone,
}

struct PutExchange<S, P> {
    source: S,
    progress: P,
    name: FileName,
    size: u64,
    crc: u32,
    resume: bool,
    step: PutStep,
}

impl<S: FileSource, P: FnMut(u64, u64)> Exchange for PutExchange<S, P> {
    type Output = FileStat;

    fn next(&mut self, out: &mut Outbox<'_>) -> Result<Next, ClientError> {
        match self.step {
            PutStep::Hash { mut at, mut crc } => {
                let done = hash_some(
                    &mut self.source,
                    out.scratch(),
                    &mut at,
                    self.size,
                    &mut crc,
                )?;
                if done {
                    self.crc = crc.finish();
                    self.step = PutStep::Request;
                    return self.next(out);
                }
                self.step = PutStep::Hash { at, crc };
                Ok(Next::Waiting)
            }
            PutStep::Request => {
                out.send(&Message::Put {
                    name: self.name,
                    size: self.size,
                    crc: self.crc,
                    resume: self.resume,
                });
                self.step = PutStep::AwaitReady;
                Ok(Next::Staged)
            }
            PutStep::CheckPrefix {
                mut at,
                end,
                mut crc,
                expected,
            } => {
                if !hash_some(&mut self.source, out.scratch(), &mut at, end, &mut crc)? {
                    self.step = PutStep::CheckPrefix {
                        at,
                        end,
                        crc,
                        expected,
                    };
                    return Ok(Next::Waiting);
                }
                if crc.finish() == expected {
                    self.start_sending(end);
                    return self.next(out);
                }
                // The server's partial is another file's: start over at 0.
                self.resume = false;
                self.step = PutStep::Request;
                self.next(out)
            }
            PutStep::Send { next } => {
                if next >= self.size {
                    self.step = PutStep::AwaitDone;
                    return Ok(Next::Waiting);
                }
                let room = out.data_room();
                let left = self.size.saturating_sub(next);
                let want = usize::try_from(left).map_or(room.len(), |left| left.min(room.len()));
                let chunk = room.get_mut(..want).unwrap_or_default();
                let n = self.source.read(next, chunk)?;
                if n == 0 {
                    return Err(LocalError::SourceShort { at: next }.into());
                }
                out.send_data(next, n);
                let next = next.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
                self.step = PutStep::Send { next };
                (self.progress)(next, self.size);
                Ok(Next::Staged)
            }
            PutStep::AwaitReady | PutStep::AwaitDone => Ok(Next::Waiting),
        }
    }

    fn on_message(
        &mut self,
        message: Message<'_>,
        _out: &mut Outbox<'_>,
    ) -> Result<Option<FileStat>, ClientError> {
        if let Message::Error { code, value } = message {
            return Err(ClientError::Refused { code, value });
        }
        match (self.step, message) {
            (PutStep::AwaitReady, Message::PutReady { offset, prefix_crc }) => {
                if offset > self.size || (offset > 0 && !self.resume) {
                    return Err(ProtocolError::BadOffset {
                        expected: 0,
                        got: offset,
                    }
                    .into());
                }
                if offset == 0 || (offset == self.size && prefix_crc == self.crc) {
                    self.start_sending(offset);
                } else {
                    self.step = PutStep::CheckPrefix {
                        at: 0,
                        end: offset,
                        crc: Crc32::new(),
                        expected: prefix_crc,
                    };
                }
                Ok(None)
            }
            (PutStep::AwaitDone, Message::PutDone { size, crc })
            | (PutStep::Send { .. }, Message::PutDone { size, crc }) => {
                let all_sent = match self.step {
                    PutStep::Send { next } => next >= self.size,
                    _ => true,
                };
                if !all_sent {
                    return unexpected(&message);
                }
                if size != self.size || crc != self.crc {
                    return Err(ProtocolError::Mismatch.into());
                }
                (self.progress)(size, size);
                Ok(Some(FileStat { size, crc }))
            }
            _ => unexpected(&message),
        }
    }

    fn in_sync(&self) -> bool {
        // Before the PUT, nothing is pending; while sending, the server is waiting
        // for DATA and takes a new request as the end of this upload.
        matches!(
            self.step,
            PutStep::Hash { .. }
                | PutStep::Request
                | PutStep::CheckPrefix { .. }
                | PutStep::Send { .. }
        )
    }

    fn local_work(&self) -> bool {
        matches!(
            self.step,
            PutStep::Hash { .. } | PutStep::CheckPrefix { .. }
        )
    }
}

impl<S, P: FnMut(u64, u64)> PutExchange<S, P> {
    fn start_sending(&mut self, offset: u64) {
        self.step = PutStep::Send { next: offset };
        (self.progress)(offset, self.size);
    }
}

#[derive(Clone, Copy, Debug)]
enum GetStep {
    /// GET to send.
    Start,
    /// Waiting for GET_READY, having asked from `offset` (whose prefix CRC is `held_crc`).
    AwaitReady { offset: u64, held_crc: u32 },
    /// DATA from `next` to `size` to receive.
    Receive {
        next: u64,
        size: u64,
        crc: Crc32,
        expected: u32,
    },
    /// The local prefix was stale: DATA up to `size` to drop, then GET from 0.
    Drain { next: u64, size: u64 },
    /// Over (the checksum failed).
    Done,
}

struct GetExchange<K, P> {
    sink: K,
    progress: P,
    name: FileName,
    resume: bool,
    step: GetStep,
}

impl<K: FileSink, P: FnMut(u64, u64)> GetExchange<K, P> {
    fn request(&mut self, offset: u64, held_crc: u32, out: &mut Outbox<'_>) {
        out.send(&Message::Get {
            name: self.name,
            offset,
        });
        self.step = GetStep::AwaitReady { offset, held_crc };
    }

    /// The local copy is not a prefix of the server's file: forget it, GET from 0.
    fn start_over(&mut self, out: &mut Outbox<'_>) -> Result<(), ClientError> {
        self.sink.restart()?;
        self.request(0, 0, out);
        Ok(())
    }

    /// Every byte is in: check the whole file's CRC-32.
    fn finish(&mut self, size: u64, crc: Crc32, expected: u32) -> Result<FileStat, ClientError> {
        self.step = GetStep::Done;
        let computed = crc.finish();
        if computed != expected {
            let _ = self.sink.restart();
            return Err(ClientError::ChecksumMismatch { expected, computed });
        }
        let stat = FileStat {
            size,
            crc: computed,
        };
        self.sink.complete(stat)?;
        (self.progress)(size, size);
        Ok(stat)
    }
}

impl<K: FileSink, P: FnMut(u64, u64)> Exchange for GetExchange<K, P> {
    type Output = FileStat;

    fn next(&mut self, out: &mut Outbox<'_>) -> Result<Next, ClientError> {
        if let GetStep::Start = self.step {
            let (offset, held_crc) = if self.resume {
                self.sink.held()?
            } else {
                self.sink.restart()?;
                (0, 0)
            };
            self.request(offset, held_crc, out);
            return Ok(Next::Staged);
        }
        Ok(Next::Waiting)
    }

    fn on_message(
        &mut self,
        message: Message<'_>,
        out: &mut Outbox<'_>,
    ) -> Result<Option<FileStat>, ClientError> {
        match (self.step, message) {
            (
                GetStep::AwaitReady { offset, held_crc },
                Message::GetReady {
                    size,
                    crc,
                    prefix_crc,
                },
            ) => {
                if offset > size {
                    return Err(ProtocolError::BadOffset {
                        expected: size,
                        got: offset,
                    }
                    .into());
                }
                if offset > 0 && prefix_crc != held_crc {
                    self.sink.restart()?;
                    if offset == size {
                        self.request(0, 0, out);
                    } else {
                        self.step = GetStep::Drain { next: offset, size };
                    }
                    return Ok(None);
                }
                (self.progress)(offset, size);
                let crc_so_far = Crc32::resume(held_crc);
                if offset == size {
                    return self.finish(size, crc_so_far, crc).map(Some);
                }
                self.step = GetStep::Receive {
                    next: offset,
                    size,
                    crc: crc_so_far,
                    expected: crc,
                };
                Ok(None)
            }
            (
                GetStep::AwaitReady { offset, .. },
                Message::Error {
                    code: ErrorCode::BadOffset,
                    ..
                },
            ) if offset > 0 => {
                // The local copy is longer than the server's file.
                self.start_over(out)?;
                Ok(None)
            }
            (
                GetStep::Receive {
                    next,
                    size,
                    mut crc,
                    expected,
                },
                Message::Data { offset, bytes },
            ) => {
                if offset != next {
                    return Err(ProtocolError::BadOffset {
                        expected: next,
                        got: offset,
                    }
                    .into());
                }
                let end = next
                    .checked_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX))
                    .filter(|end| *end <= size)
                    .ok_or(ProtocolError::TooMuchData)?;
                self.sink.write(offset, bytes)?;
                crc.update(bytes);
                (self.progress)(end, size);
                if end == size {
                    return self.finish(size, crc, expected).map(Some);
                }
                self.step = GetStep::Receive {
                    next: end,
                    size,
                    crc,
                    expected,
                };
                Ok(None)
            }
            (GetStep::Drain { next, size }, Message::Data { offset, bytes }) => {
                let end = next
                    .checked_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX))
                    .filter(|end| offset == next && *end <= size)
                    .ok_or(ProtocolError::BadOffset {
                        expected: next,
                        got: offset,
                    })?;
                if end == size {
                    self.request(0, 0, out);
                } else {
                    self.step = GetStep::Drain { next: end, size };
                }
                Ok(None)
            }
            (_, Message::Error { code, value }) => {
                // An ERROR ends the request, in place of GET_READY or of a DATA.
                self.step = GetStep::Done;
                Err(ClientError::Refused { code, value })
            }
            (_, other) => unexpected(&other),
        }
    }

    fn in_sync(&self) -> bool {
        matches!(self.step, GetStep::Start | GetStep::Done)
    }
}

struct ListExchange<F> {
    on_entry: F,
    seen: u32,
    sent: bool,
}

impl<F: FnMut(Entry)> Exchange for ListExchange<F> {
    type Output = u32;

    fn next(&mut self, out: &mut Outbox<'_>) -> Result<Next, ClientError> {
        if self.sent {
            return Ok(Next::Waiting);
        }
        self.sent = true;
        out.send(&Message::List);
        Ok(Next::Staged)
    }

    fn on_message(
        &mut self,
        message: Message<'_>,
        _out: &mut Outbox<'_>,
    ) -> Result<Option<u32>, ClientError> {
        match message {
            Message::Entry { name, size } => {
                self.seen = self.seen.saturating_add(1);
                (self.on_entry)(Entry { name, size });
                Ok(None)
            }
            Message::ListEnd { count } if count == self.seen => Ok(Some(count)),
            Message::ListEnd { .. } => Err(ProtocolError::Mismatch.into()),
            Message::Error { code, value } => Err(ClientError::Refused { code, value }),
            other => unexpected(&other),
        }
    }

    fn in_sync(&self) -> bool {
        !self.sent
    }
}

#[derive(Clone, Copy, Debug)]
enum SimpleRequest {
    Stat(FileName),
    Delete(FileName),
}

struct SimpleExchange {
    request: SimpleRequest,
    sent: bool,
}

impl Exchange for SimpleExchange {
    /// STAT_OK's size and CRC-32; DELETE_OK gives `None`.
    type Output = Option<FileStat>;

    fn next(&mut self, out: &mut Outbox<'_>) -> Result<Next, ClientError> {
        if self.sent {
            return Ok(Next::Waiting);
        }
        self.sent = true;
        out.send(&match self.request {
            SimpleRequest::Stat(name) => Message::Stat { name },
            SimpleRequest::Delete(name) => Message::Delete { name },
        });
        Ok(Next::Staged)
    }

    fn on_message(
        &mut self,
        message: Message<'_>,
        _out: &mut Outbox<'_>,
    ) -> Result<Option<Option<FileStat>>, ClientError> {
        match (self.request, message) {
            (_, Message::Error { code, value }) => Err(ClientError::Refused { code, value }),
            (SimpleRequest::Stat(_), Message::StatOk { size, crc }) => {
                Ok(Some(Some(FileStat { size, crc })))
            }
            (SimpleRequest::Delete(_), Message::DeleteOk) => Ok(Some(None)),
            (_, other) => unexpected(&other),
        }
    }

    fn in_sync(&self) -> bool {
        !self.sent
    }
}

/// An upload in progress: [`TransferClient::put`].
pub struct PutFile<'c, B, S, P> {
    client: &'c mut TransferClient<B>,
    exchange: PutExchange<S, P>,
    started: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, S: FileSource, P: FnMut(u64, u64)> PutFile<'_, B, S, P> {
    /// Does what can be done now; `Ready` with the stored file's size and CRC-32
    /// once the server committed it.
    pub fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Poll<Result<FileStat, ClientError>> {
        self.client
            .drive(socket, now, &mut self.exchange, &mut self.started)
    }

    /// When to poll again even if no packet arrives (at once while the file is
    /// being hashed).
    pub fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at(self.exchange.local_work())
    }
}

/// A download in progress: [`TransferClient::get`].
pub struct GetFile<'c, B, K, P> {
    client: &'c mut TransferClient<B>,
    exchange: GetExchange<K, P>,
    started: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, K: FileSink, P: FnMut(u64, u64)> GetFile<'_, B, K, P> {
    /// Does what can be done now; `Ready` with the file's size and CRC-32 once it
    /// arrived whole and checked, and the sink completed it.
    pub fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Poll<Result<FileStat, ClientError>> {
        self.client
            .drive(socket, now, &mut self.exchange, &mut self.started)
    }

    /// When to poll again even if no packet arrives (the timeout).
    pub fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at(false)
    }

    /// The sink, to look at what arrived.
    pub fn sink(&self) -> &K {
        &self.exchange.sink
    }
}

/// A listing in progress: [`TransferClient::list`].
pub struct ListFiles<'c, B, F> {
    client: &'c mut TransferClient<B>,
    exchange: ListExchange<F>,
    started: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>, F: FnMut(Entry)> ListFiles<'_, B, F> {
    /// Does what can be done now; `Ready` with the number of files listed.
    pub fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Poll<Result<u32, ClientError>> {
        self.client
            .drive(socket, now, &mut self.exchange, &mut self.started)
    }

    /// When to poll again even if no packet arrives (the timeout).
    pub fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at(false)
    }
}

/// A STAT in progress: [`TransferClient::stat`].
pub struct StatFile<'c, B> {
    client: &'c mut TransferClient<B>,
    exchange: SimpleExchange,
    started: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> StatFile<'_, B> {
    /// Does what can be done now; `Ready` with the file's size and CRC-32.
    pub fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Poll<Result<FileStat, ClientError>> {
        self.client
            .drive(socket, now, &mut self.exchange, &mut self.started)
            .map(|result| result.and_then(|stat| stat.ok_or(ClientError::Unusable)))
    }

    /// When to poll again even if no packet arrives (the timeout).
    pub fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at(false)
    }
}

/// A DELETE in progress: [`TransferClient::delete`].
pub struct DeleteFile<'c, B> {
    client: &'c mut TransferClient<B>,
    exchange: SimpleExchange,
    started: bool,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> DeleteFile<'_, B> {
    /// Does what can be done now; `Ready(Ok(()))` once the file is gone.
    pub fn poll(
        &mut self,
        socket: &mut tcp::Socket<'_>,
        now: Instant,
    ) -> Poll<Result<(), ClientError>> {
        self.client
            .drive(socket, now, &mut self.exchange, &mut self.started)
            .map(|result| result.map(|_| ()))
    }

    /// When to poll again even if no packet arrives (the timeout).
    pub fn poll_at(&self) -> Option<Instant> {
        self.client.poll_at(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::crc32::crc32;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    /// A staging buffer and what an exchange put in it.
    struct Staging {
        buf: Vec<u8>,
        outgoing: usize,
    }

    impl Staging {
        fn new() -> Self {
            Self {
                buf: vec![0; 256],
                outgoing: 0,
            }
        }

        fn outbox(&mut self) -> Outbox<'_> {
            Outbox {
                staging: &mut self.buf,
                outgoing: &mut self.outgoing,
                frame_limit: 128,
            }
        }

        fn take(&mut self) -> Vec<u8> {
            let frame = self.buf[..self.outgoing].to_vec();
            self.outgoing = 0;
            frame
        }
    }

    #[test]
    fn a_slice_reads_at_any_offset_and_ends_cleanly() {
        let mut file: &[u8] = b"hello, world\n";
        assert_eq!(file.size(), 13);
        let mut buf = [0u8; 5];
        assert_eq!(file.read(7, &mut buf), Ok(5));
        assert_eq!(&buf, b"world");
        assert_eq!(file.read(12, &mut buf), Ok(1));
        assert_eq!(file.read(13, &mut buf), Ok(0));
        assert_eq!(file.read(u64::MAX, &mut buf), Ok(0));
    }

    #[test]
    fn a_slice_sink_keeps_what_arrived_for_a_resume_and_refuses_overflow() {
        let mut buf = [0u8; 8];
        let mut sink = SliceSink::new(&mut buf);
        sink.write(0, b"abc").unwrap();
        assert_eq!(sink.held(), Ok((3, crc32(b"abc"))));
        assert_eq!(sink.write(5, b"x"), Err(LocalError::Write));
        assert_eq!(sink.write(3, b"defghi"), Err(LocalError::NoSpace));
        sink.write(3, b"defgh").unwrap();
        sink.complete(FileStat { size: 8, crc: 0 }).unwrap();
        assert!(sink.is_complete());
        assert_eq!(sink.data(), b"abcdefgh");
        sink.restart().unwrap();
        assert_eq!((sink.data(), sink.is_complete()), (&b""[..], false));
    }

    #[test]
    fn hashing_stops_after_its_budget_and_goes_on_where_it_stopped() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let mut source = &data[..];
        let mut scratch = [0u8; 1000];
        let (mut at, mut crc) = (0, Crc32::new());
        let end = data.len() as u64;
        let mut rounds = 0;
        while !hash_some(&mut source, &mut scratch, &mut at, end, &mut crc).unwrap() {
            rounds += 1;
            assert_eq!(at, rounds * LOCAL_WORK_PER_POLL);
        }
        assert_eq!(rounds, 3);
        assert_eq!(crc.finish(), crc32(&data));
        let mut short = &data[..10];
        assert_eq!(
            hash_some(&mut short, &mut scratch, &mut 0, 20, &mut Crc32::new()),
            Err(ClientError::Local(LocalError::SourceShort { at: 10 }))
        );
    }

    #[test]
    fn an_upload_whose_partial_is_another_file_starts_again_without_resume() {
        let data = b"hello, world\n";
        let mut seen = Vec::new();
        let mut put = PutExchange {
            source: &data[..],
            progress: |d, t| seen.push((d, t)),
            name: name("hello.txt"),
            size: 13,
            crc: 0,
            resume: true,
            step: PutStep::Hash {
                at: 0,
                crc: Crc32::new(),
            },
        };
        let mut staging = Staging::new();
        assert!(matches!(put.next(&mut staging.outbox()), Ok(Next::Staged)));
        let request = staging.take();
        assert_eq!(
            Message::parse(&request),
            Ok(Message::Put {
                name: name("hello.txt"),
                size: 13,
                crc: crc32(data),
                resume: true
            })
        );
        assert!(!put.in_sync(), "a PUT awaits its answer");
        // The server holds 7 bytes, but not ours.
        let ready = Message::PutReady {
            offset: 7,
            prefix_crc: crc32(b"HELLO, "),
        };
        assert_eq!(put.on_message(ready, &mut staging.outbox()), Ok(None));
        assert!(matches!(put.next(&mut staging.outbox()), Ok(Next::Staged)));
        assert_eq!(
            Message::parse(&staging.take()),
            Ok(Message::Put {
                name: name("hello.txt"),
                size: 13,
                crc: crc32(data),
                resume: false
            })
        );
        let ready = Message::PutReady {
            offset: 0,
            prefix_crc: 0,
        };
        assert_eq!(put.on_message(ready, &mut staging.outbox()), Ok(None));
        assert!(matches!(put.next(&mut staging.outbox()), Ok(Next::Staged)));
        assert_eq!(
            Message::parse(&staging.take()),
            Ok(Message::Data {
                offset: 0,
                bytes: data
            })
        );
        assert!(matches!(put.next(&mut staging.outbox()), Ok(Next::Waiting)));
        let done = Message::PutDone {
            size: 13,
            crc: crc32(data),
        };
        assert_eq!(
            put.on_message(done, &mut staging.outbox()),
            Ok(Some(FileStat {
                size: 13,
                crc: crc32(data)
            }))
        );
        assert_eq!(seen, [(0, 13), (13, 13), (13, 13)]);
    }

    #[test]
    fn a_download_rejects_data_out_of_place() {
        let mut buf = [0u8; 16];
        let mut get = GetExchange {
            sink: SliceSink::new(&mut buf),
            progress: |_, _| {},
            name: name("f"),
            resume: false,
            step: GetStep::Start,
        };
        let mut staging = Staging::new();
        assert!(matches!(get.next(&mut staging.outbox()), Ok(Next::Staged)));
        let ready = Message::GetReady {
            size: 4,
            crc: crc32(b"abcd"),
            prefix_crc: 0,
        };
        assert_eq!(get.on_message(ready, &mut staging.outbox()), Ok(None));
        let skipped = Message::Data {
            offset: 1,
            bytes: b"bcd",
        };
        assert_eq!(
            get.on_message(skipped, &mut staging.outbox()),
            Err(ProtocolError::BadOffset {
                expected: 0,
                got: 1
            }
            .into())
        );
        let too_long = Message::Data {
            offset: 0,
            bytes: b"abcde",
        };
        assert_eq!(
            get.on_message(too_long, &mut staging.outbox()),
            Err(ProtocolError::TooMuchData.into())
        );
        assert!(!get.in_sync(), "the server is still sending");
    }

    #[test]
    fn a_client_needs_room_for_the_smallest_frames() {
        assert_eq!(
            TransferClient::new(vec![0; 131], vec![0; 128]).err(),
            Some(SetupError::ReceiveStorageTooSmall { len: 131 })
        );
        assert_eq!(
            TransferClient::new(vec![0; 132], vec![0; 100]).err(),
            Some(SetupError::StagingTooSmall { len: 100 })
        );
        let client = TransferClient::new([0u8; 132], [0u8; 132]).unwrap();
        assert_eq!((client.max_body(), client.server_max_body()), (128, None));
    }
}
