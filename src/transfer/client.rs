//! The `no_std` transfer client: push a file, fetch a file, list, stat, delete.
//!
//! [`TransferClient`] owns the framing of one connection to a transfer server (a
//! frame receive storage and a staging buffer of one frame); the caller owns the
//! connection and whatever moves its bytes. Each request is an operation borrowed
//! from the client ([`PutFile`], [`GetFile`], [`ListFiles`], [`StatFile`],
//! [`DeleteFile`]), a [`Request`]: bytes that arrived go in through
//! [`receive`](Session::receive), bytes to send come out of
//! [`transmit`](Session::transmit), the time is passed in, and
//! [`outcome`](Request::outcome) gives the result once there is one. The HELLO
//! exchange happens at the start of the first operation on a connection.
//!
//! File bytes come from a [`FileSource`] and go to a [`FileSink`], read and written
//! one frame at a time at explicit offsets, and a progress callback sees
//! `(done, total)` after every frame. Uploads and downloads resume where an earlier
//! attempt stopped, and both ends check the CRC-32 of the whole file.

use core::fmt;

use super::common::{DEFAULT_MIN_TRANSFER_RATE, Outgoing, Sender, SetupError, framing, to_u64};
use super::files::{FileSink, FileSource, LocalError};
use crate::session::{FramedStats, Request, Session, Status};
use crate::store::{Entry, FileName, FileStat};
use crate::time::{Duration, Instant, at_rate, sooner};
use crate::wire::crc32::Crc32;
use crate::wire::frame::{FrameReader, ReadError};
use crate::wire::transfer::{
    DATA_HEADER_LEN, ErrorCode, Message, MessageType, PROTOCOL_VERSION, TransferError,
    emit_data_header,
};

/// Bytes of local work (hashing a file) one call does at most before it returns,
/// so a large file does not hold up the caller's main loop.
const LOCAL_WORK_PER_CALL: u64 = 64 * 1024;

/// How long a client waits for a server that moves no byte, unless
/// [`TransferClient::with_timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The most ENTRY frames a listing takes, unless
/// [`TransferClient::with_max_entries`] says otherwise: 64 Ki, at most about
/// 5 MiB of ENTRY frames. (A `DirStore` lists whatever its directory holds,
/// more than the 1,024 files it takes uploads for by default.)
const DEFAULT_MAX_ENTRIES: u32 = 65_536;

/// The buffers a client or an operation works over.
trait Buf: AsRef<[u8]> + AsMut<[u8]> {}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Buf for B {}

/// How the server broke the protocol. The connection must be closed.
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

impl core::error::Error for ProtocolError {}

/// Why a transfer operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered ERROR (`PROTOCOL.md` section 8 says what `value` is).
    /// The connection stays usable, unless the HELLO was refused or the code is
    /// one after which the server closes (`FrameTooLarge`, `RequestTimeout`,
    /// `TooSlow`): then
    /// the operation's status is [`Status::Close`].
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
    /// The server broke the protocol; the connection must be closed.
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
    /// No byte moved for the client's timeout; the connection must be reset
    /// (the operation's status is [`Status::Abort`]).
    Timeout,
    /// The operation fell below the client's minimum rate on average
    /// ([`TransferClient::with_min_rate`]), though bytes kept moving; the
    /// connection must be reset (the operation's status is [`Status::Abort`]).
    TooSlow {
        /// The client's minimum rate, bytes per second.
        rate: u32,
    },
    /// A listing went on past the client's limit of ENTRY frames
    /// ([`TransferClient::with_max_entries`]): the entry over it was not handed
    /// on, and the connection must be closed, the rest of the listing being on
    /// its way (the operation's status is [`Status::Close`]).
    TooManyEntries {
        /// The client's limit.
        max: u32,
    },
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
            Self::TooSlow { rate } => write!(f, "slower than {rate} B/s on average"),
            Self::TooManyEntries { max } => write!(f, "listing longer than {max} entries"),
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
    ///
    /// The client reads it on the open connection, which sends nothing
    /// meanwhile, and a server resets a connection that stays idle for long
    /// (smolsock's after 60 s by default): for a file that takes longer than
    /// that to read, compute its CRC-32 before connecting and pass it here
    /// (and see [`FileSource::crc_checkpoint`] for a resume).
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

/// A client's connection, besides its frame reader and its outgoing frame.
#[derive(Clone, Copy, Debug)]
struct Conn {
    max_body: u32,
    link: Link,
    /// Whether the connection carries no half-finished request.
    in_sync: bool,
    timeout: Option<Duration>,
    /// The slowest average rate of an operation, bytes per second (0: none).
    min_rate: u32,
    /// The most ENTRY frames a listing takes.
    max_entries: u32,
    /// When bytes last moved (or local work was done) for the operation running.
    last_progress: Option<Instant>,
    /// The latest time an operation was told.
    now: Instant,
    /// What the connection should do: [`Status::Open`] while it can carry requests.
    fate: Status,
    /// The server has finished sending.
    peer_done: bool,
}

/// The client end of one connection to a transfer server.
///
/// Each request is an operation borrowed from the client; drive it like any
/// [`Session`] until its [`outcome`](Request::outcome) is `Some`. The client holds
/// no connection: after connecting anew (or after an operation failed in a way
/// that leaves the connection unusable), call [`reset`](Self::reset).
///
/// ```
/// use smolsock::session::{Request, Session};
/// use smolsock::store::FileName;
/// use smolsock::time::Instant;
/// use smolsock::transfer::TransferClient;
///
/// let mut client = TransferClient::new([0u8; 260], [0u8; 260])?;
/// let mut stat = client.stat(FileName::new("boot.log")?);
/// let mut space = [0u8; 64];
/// let n = stat.transmit(&mut space, Instant::ZERO);
/// // HELLO first (version 1, bodies up to 256 bytes), then the STAT.
/// assert_eq!(&space[..n], [
///     0, 0, 0, 10, 0x01, b'S', b'S', b'F', b'T', 1, 0, 0, 1, 0,
/// ]);
/// // HELLO_OK, then ERROR NotFound: the request is over, the connection usable.
/// let answer = [
///     0, 0, 0, 10, 0x81, b'S', b'S', b'F', b'T', 1, 0, 1, 0, 0,
/// ];
/// stat.receive(&answer, Instant::ZERO);
/// let n = stat.transmit(&mut space, Instant::ZERO);
/// assert_eq!(&space[..n], [0, 0, 0, 10, 0x05, 8, b'b', b'o', b'o', b't', b'.', b'l', b'o', b'g']);
/// stat.receive(&[0, 0, 0, 10, 0xFF, 0x07, 0, 0, 0, 0, 0, 0, 0, 0], Instant::ZERO);
/// let refused = stat.outcome().unwrap().unwrap_err();
/// assert_eq!(refused.code(), Some(smolsock::wire::transfer::ErrorCode::NotFound));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// `B` is the buffer type of the frame receive storage (the largest body the client
/// accepts is its length minus 4: a download's DATA frames are that large at most)
/// and of the staging buffer (the largest frame it sends is as long: uploads go in
/// DATA frames of its length minus 4 body bytes, or less if the server accepts
/// less).
pub struct TransferClient<B> {
    reader: FrameReader<B>,
    out: Outgoing<B>,
    conn: Conn,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> TransferClient<B> {
    /// A client receiving frames into `receive` and staging outgoing frames in
    /// `staging`. Fails unless `receive` holds a 4-byte header and a 128-byte
    /// body, and `staging` 128 bytes.
    ///
    /// A client gives up on a server that moves no byte for 60 s (see
    /// [`with_timeout`](Self::with_timeout)), on an operation slower than
    /// 500 B/s on average (see [`with_min_rate`](Self::with_min_rate)), and on
    /// a listing of more than 65,536 files (see
    /// [`with_max_entries`](Self::with_max_entries)).
    pub fn new(receive: B, staging: B) -> Result<Self, SetupError> {
        let (reader, max_body) = framing(receive, &staging)?;
        Ok(Self {
            reader,
            out: Outgoing::new(staging),
            conn: Conn {
                max_body,
                link: Link::Fresh,
                in_sync: true,
                timeout: Some(DEFAULT_TIMEOUT),
                min_rate: DEFAULT_MIN_TRANSFER_RATE,
                max_entries: DEFAULT_MAX_ENTRIES,
                last_progress: None,
                now: Instant::ZERO,
                fate: Status::Open,
                peer_done: false,
            },
        })
    }

    /// The same client with another timeout for a silent server (`None`: wait
    /// forever, and no [minimum rate](Self::with_min_rate) either).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.conn.timeout = timeout;
        self
    }

    /// The same client with another minimum rate for its operations, in bytes
    /// per second (500 unless set; 0: none, only the timeout).
    ///
    /// The [timeout](Self::with_timeout) ends an operation on which no byte
    /// moves; this ends one whose bytes only trickle, a server sending one byte,
    /// or one ENTRY, just before each timeout: an operation must be over by the
    /// timeout from its start, plus a second for every `rate` bytes it has
    /// moved, else it ends with [`ClientError::TooSlow`]. Moved are the bytes
    /// sent and received, those read from the local file to compute a CRC, and
    /// the prefix a resume asks the server to read and check: for a download,
    /// the bytes the sink holds (none once the server answers that its file is
    /// shorter); for an upload, the whole file until PUT_READY says how much
    /// the server holds, then that. So however a server trickles, an operation
    /// lasts no longer than its bytes allow at this rate. The default is the
    /// server's own minimum for a transfer.
    #[must_use]
    pub const fn with_min_rate(mut self, rate: u32) -> Self {
        self.conn.min_rate = rate;
        self
    }

    /// The same client with another limit on the files one listing may name
    /// (65,536 unless set): an ENTRY past `max` ends the [`list`](Self::list)
    /// with [`ClientError::TooManyEntries`].
    ///
    /// The [minimum rate](Self::with_min_rate) bounds how long a listing takes
    /// by the bytes it moves; this bounds how many entries it hands on, however
    /// fast they come. `u32::MAX` is the protocol's own limit (LIST_END counts
    /// the entries in a `u32`).
    #[must_use]
    pub const fn with_max_entries(mut self, max: u32) -> Self {
        self.conn.max_entries = max;
        self
    }

    /// Starts over on a new connection (after connecting again).
    pub fn reset(&mut self) {
        self.reader.reset();
        self.out.clear();
        let conn = &mut self.conn;
        conn.link = Link::Fresh;
        conn.in_sync = true;
        conn.last_progress = None;
        conn.fate = Status::Open;
        conn.peer_done = false;
    }

    /// The largest frame body this client accepts (announced in HELLO).
    pub const fn max_body(&self) -> u32 {
        self.conn.max_body
    }

    /// The server's frame limit, once the HELLO exchange is done.
    pub const fn server_max_body(&self) -> Option<u32> {
        match self.conn.link {
            Link::Ready { server_max_body } => Some(server_max_body),
            _ => None,
        }
    }

    /// Framing counters of this client, over all its connections.
    pub fn framed_stats(&self) -> FramedStats {
        FramedStats {
            read: *self.reader.stats(),
            write: self.out.stats(),
        }
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
            run: Run::new(
                self,
                PutExchange {
                    source,
                    progress,
                    name,
                    size,
                    crc: options.crc.unwrap_or(0),
                    resume: options.resume,
                    step,
                    hashed: 0,
                    checked: 0,
                },
            ),
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
            run: Run::new(
                self,
                GetExchange {
                    sink,
                    progress,
                    name,
                    resume,
                    step: GetStep::Start,
                    empty_data: false,
                    checked: 0,
                },
            ),
        }
    }

    /// Lists the server's files, calling `on_entry` for each; ends with their count.
    ///
    /// A listing takes at most the client's
    /// [`with_max_entries`](Self::with_max_entries) entries (65,536 by default):
    /// one more ends it with [`ClientError::TooManyEntries`].
    pub fn list<F: FnMut(Entry)>(&mut self, on_entry: F) -> ListFiles<'_, B, F> {
        let max = self.conn.max_entries;
        ListFiles {
            run: Run::new(
                self,
                ListExchange {
                    on_entry,
                    seen: 0,
                    max,
                    sent: false,
                },
            ),
        }
    }

    /// Size and CRC-32 of a stored file.
    pub fn stat(&mut self, name: FileName) -> StatFile<'_, B> {
        StatFile {
            run: Run::new(
                self,
                SimpleExchange {
                    request: SimpleRequest::Stat(name),
                    sent: false,
                },
            ),
        }
    }

    /// Deletes a stored file (and any partial upload of it).
    pub fn delete(&mut self, name: FileName) -> DeleteFile<'_, B> {
        DeleteFile {
            run: Run::new(
                self,
                SimpleExchange {
                    request: SimpleRequest::Delete(name),
                    sent: false,
                },
            ),
        }
    }
}

impl<B> fmt::Debug for TransferClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferClient")
            .field("max_body", &self.conn.max_body)
            .field("link", &self.conn.link)
            .field("in_sync", &self.conn.in_sync)
            .finish_non_exhaustive()
    }
}

/// The sending side, as an exchange sees it: made only while nothing waits in
/// staging, so every frame fits.
struct Outbox<'o, 'a, B> {
    sender: &'o mut Sender<'a, B>,
    /// The largest frame body the server takes.
    frame_limit: u32,
}

impl<B: Buf> Outbox<'_, '_, B> {
    fn send(&mut self, message: &Message<'_>) -> Result<(), ClientError> {
        // Staging holds at least 128 bytes and no request is longer than 79.
        self.sender.send(message).map_err(|_| ClientError::Unusable)
    }

    /// The most file bytes the next DATA frame may carry.
    fn data_room(&self) -> usize {
        (self.frame_limit as usize)
            .min(self.sender.max_body())
            .saturating_sub(DATA_HEADER_LEN)
    }

    /// Sends DATA at `offset` with up to `len` bytes (at most
    /// [`data_room`](Self::data_room)) that `read` writes into the slice it gets
    /// and counts; returns that count.
    fn send_data(
        &mut self,
        offset: u64,
        len: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, ClientError>,
    ) -> Result<usize, ClientError> {
        let sent = self
            .sender
            .send_with(DATA_HEADER_LEN.saturating_add(len), |body| {
                let chunk = body.get_mut(DATA_HEADER_LEN..).unwrap_or_default();
                let n = read(chunk)?.min(chunk.len());
                emit_data_header(body, offset).map_err(|_| ClientError::Unusable)?;
                Ok(DATA_HEADER_LEN.saturating_add(n))
            });
        match sent {
            Ok(Ok(len)) => Ok(len.saturating_sub(DATA_HEADER_LEN)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Unusable),
        }
    }

    /// The whole staging buffer as scratch space for local work.
    fn scratch(&mut self) -> &mut [u8] {
        self.sender.scratch()
    }
}

enum Next {
    /// A frame was made: go on.
    Staged,
    /// Nothing to do until the server says something (or the next call).
    Waiting,
}

/// One request's side of the conversation.
trait Exchange {
    type Output;

    /// Local work, or the next frame to send. Called with nothing staged.
    fn next<B: Buf>(&mut self, out: &mut Outbox<'_, '_, B>) -> Result<Next, ClientError>;

    /// A message from the server. Called with nothing staged.
    fn on_message<B: Buf>(
        &mut self,
        message: Message<'_>,
        out: &mut Outbox<'_, '_, B>,
    ) -> Result<Option<Self::Output>, ClientError>;

    /// Whether the connection could carry another request if this one stopped now.
    fn in_sync(&self) -> bool;

    /// Where the local work (hashing the source) stands, while there is some:
    /// its moving is progress, though no byte crosses the network.
    fn local_position(&self) -> Option<u64> {
        None
    }

    /// Bytes of work done for the request that moved no byte over the link,
    /// counted toward the minimum rate as if moved: those read from the local
    /// file to compute a CRC, and the prefix a resume asks the server to read
    /// and check.
    fn credit(&self) -> u64 {
        0
    }
}

fn unexpected<T>(message: &Message<'_>) -> Result<T, ClientError> {
    Err(ProtocolError::Unexpected(message.message_type()).into())
}

/// Does what can be done: whole frames from the server first, in order, then the
/// HELLO or the exchange's next frame. `Some` once the request is over.
fn step<B: Buf, E: Exchange>(
    reader: &mut FrameReader<B>,
    conn: &mut Conn,
    sender: &mut Sender<'_, B>,
    exchange: &mut E,
) -> Option<Result<E::Output, ClientError>> {
    loop {
        if conn.peer_done {
            // The server sends FIN only when it is done with the connection:
            // what we would still send is never read.
            sender.discard();
        }
        if !sender.ready() {
            return None;
        }
        if let Some(frame) = reader.frame() {
            let over = on_frame(frame, conn, sender, exchange);
            reader.consume();
            if over.is_some() {
                return over;
            }
            continue;
        }
        if let Some(ReadError::Oversize { len, max }) = reader.error() {
            return Some(Err(ProtocolError::FrameTooLarge { len, max }.into()));
        }
        if conn.peer_done {
            // Counted if a frame was cut short; either way, the server is gone.
            let _ = reader.finish();
            return Some(Err(ClientError::Disconnected));
        }
        match conn.link {
            Link::Fresh => {
                let hello = Message::Hello {
                    version: PROTOCOL_VERSION,
                    max_body: conn.max_body,
                };
                if sender.send(&hello).is_err() {
                    return Some(Err(ClientError::Unusable));
                }
                conn.link = Link::HelloSent;
            }
            Link::HelloSent => return None,
            Link::Broken => return Some(Err(ClientError::Unusable)),
            Link::Ready { server_max_body } => {
                let mut outbox = Outbox {
                    sender,
                    frame_limit: server_max_body,
                };
                match exchange.next(&mut outbox) {
                    Ok(Next::Staged) => {}
                    Ok(Next::Waiting) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
        }
    }
}

/// One whole frame from the server. `Some` once the request is over.
fn on_frame<B: Buf, E: Exchange>(
    frame: &[u8],
    conn: &mut Conn,
    sender: &mut Sender<'_, B>,
    exchange: &mut E,
) -> Option<Result<E::Output, ClientError>> {
    let message = match Message::parse(frame) {
        Ok(message) => message,
        Err(TransferError::UnknownErrorCode(code)) => {
            return Some(Err(ClientError::RefusedUnknown { code }));
        }
        Err(e) => return Some(Err(ProtocolError::Malformed(e).into())),
    };
    match conn.link {
        Link::HelloSent => match message {
            Message::HelloOk { version, .. } if version != PROTOCOL_VERSION => {
                Some(Err(ProtocolError::Version(version).into()))
            }
            Message::HelloOk { max_body, .. } => {
                conn.link = Link::Ready {
                    server_max_body: max_body,
                };
                None
            }
            Message::Error { code, value } => {
                conn.link = Link::Broken;
                Some(Err(ClientError::Refused { code, value }))
            }
            other => Some(unexpected(&other)),
        },
        Link::Ready { server_max_body } => {
            let mut outbox = Outbox {
                sender,
                frame_limit: server_max_body,
            };
            exchange.on_message(message, &mut outbox).transpose()
        }
        // The server spoke first.
        Link::Fresh | Link::Broken => Some(unexpected(&message)),
    }
}

/// An operation's drive: its exchange over the client's connection.
struct Run<'c, B, E: Exchange> {
    client: &'c mut TransferClient<B>,
    exchange: E,
    began: bool,
    /// When the request began: the minimum rate counts from there.
    began_at: Instant,
    /// Bytes sent and received since.
    moved: u64,
    done: bool,
    outcome: Option<Result<E::Output, ClientError>>,
}

impl<'c, B: Buf, E: Exchange> Run<'c, B, E> {
    fn new(client: &'c mut TransferClient<B>, exchange: E) -> Self {
        Self {
            client,
            exchange,
            began: false,
            began_at: Instant::ZERO,
            moved: 0,
            done: false,
            outcome: None,
        }
    }

    /// The request starts with the first call, whichever it is.
    fn begin(&mut self, now: Instant) {
        self.client.conn.now = now;
        if self.began {
            return;
        }
        self.began = true;
        self.began_at = now;
        let conn = &mut self.client.conn;
        conn.last_progress = Some(now);
        if !conn.in_sync {
            // An earlier operation was dropped half way: the server's next words
            // may belong to it.
            conn.link = Link::Broken;
        }
        if conn.link == Link::Broken {
            self.finish(Err(ClientError::Unusable));
        }
    }

    /// Steps the exchange, sending into `space` (what waits in staging first);
    /// returns the bytes written there.
    fn work(&mut self, space: &mut [u8], now: Instant) -> usize {
        let credit = self.exchange.credit();
        let client = &mut *self.client;
        let mut sender = Sender::new(&mut client.out, space);
        let over = if self.done {
            None
        } else {
            step(
                &mut client.reader,
                &mut client.conn,
                &mut sender,
                &mut self.exchange,
            )
        };
        let used = sender.used();
        // Hashing a large file moves no byte but is progress all the same (it
        // waits for HELLO_OK, though, and a resume's credit changes only with
        // the server's answer).
        if used > 0 || self.exchange.credit() != credit {
            self.client.conn.last_progress = Some(now);
            self.moved = self.moved.saturating_add(to_u64(used));
        }
        match over {
            Some(result) => self.finish(result),
            None if !self.done => self.client.conn.in_sync = self.exchange.in_sync(),
            None => {}
        }
        used
    }

    fn finish(&mut self, result: Result<E::Output, ClientError>) {
        if self.done {
            return;
        }
        self.done = true;
        let conn = &mut self.client.conn;
        conn.last_progress = None;
        match &result {
            Err(ClientError::Refused {
                code: ErrorCode::FrameTooLarge | ErrorCode::RequestTimeout | ErrorCode::TooSlow,
                ..
            }) => {
                // The server closes after these.
                conn.link = Link::Broken;
            }
            // An ERROR ends the request it answers, wherever it came.
            Ok(_) | Err(ClientError::Refused { .. }) => conn.in_sync = true,
            Err(ClientError::Local(_) | ClientError::ChecksumMismatch { .. }) => {
                conn.in_sync = self.exchange.in_sync();
                if !conn.in_sync {
                    conn.link = Link::Broken;
                }
            }
            Err(ClientError::Timeout | ClientError::TooSlow { .. }) => {
                conn.link = Link::Broken;
                conn.fate = Status::Abort;
            }
            Err(_) => conn.link = Link::Broken,
        }
        if conn.link == Link::Broken && conn.fate == Status::Open {
            conn.fate = Status::Close;
        }
        self.outcome = Some(result);
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        self.begin(now);
        let mut taken = 0usize;
        while !self.done {
            self.work(&mut [], now);
            let Some(rest) = input.get(taken..).filter(|rest| !rest.is_empty()) else {
                break;
            };
            if self.done {
                break;
            }
            match self.client.reader.feed(rest) {
                Ok(0) => break,
                Ok(n) => taken = taken.saturating_add(n),
                // Nothing after an oversize header is a frame: read and dropped;
                // the request fails once the whole frames before it are handled.
                Err(_) => taken = input.len(),
            }
        }
        if taken > 0 {
            self.client.conn.last_progress = Some(now);
            self.moved = self.moved.saturating_add(to_u64(taken));
        }
        taken
    }

    /// When the operation fails if nothing moves (the timeout after the last
    /// progress), and when it fails however its bytes trickle (the timeout
    /// after its start, plus a second per `min_rate` bytes moved).
    fn deadlines(&self) -> (Option<Instant>, Option<Instant>) {
        let conn = &self.client.conn;
        let Some(timeout) = conn.timeout.filter(|_| self.began) else {
            return (None, None);
        };
        let idle = conn.last_progress.map(|last| last.saturating_add(timeout));
        let slow = (conn.min_rate > 0).then(|| {
            let counted = self.moved.saturating_add(self.exchange.credit());
            self.began_at
                .saturating_add(timeout)
                .saturating_add(at_rate(counted, conn.min_rate))
        });
        (idle, slow)
    }

    fn receive_finished(&mut self, now: Instant) {
        self.begin(now);
        self.client.conn.peer_done = true;
        self.work(&mut [], now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        self.begin(now);
        self.client.out.offered(space.len());
        self.work(space, now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let conn = &self.client.conn;
        if self.exchange.local_position().is_some()
            && matches!(conn.link, Link::Ready { .. })
            && self.client.out.is_empty()
        {
            // Local work waits for no byte: due at once.
            return Some(conn.now);
        }
        let (idle, slow) = self.deadlines();
        sooner(idle, slow)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.begin(now);
        if self.done {
            return;
        }
        self.work(&mut [], now);
        if self.done {
            return;
        }
        let (idle, slow) = self.deadlines();
        if idle.is_some_and(|idle| now >= idle) {
            self.finish(Err(ClientError::Timeout));
        } else if slow.is_some_and(|slow| now >= slow) {
            let rate = self.client.conn.min_rate;
            self.finish(Err(ClientError::TooSlow { rate }));
        }
    }

    fn status(&self) -> Status {
        if self.done {
            self.client.conn.fate
        } else {
            Status::Open
        }
    }

    fn end(&mut self, now: Instant) {
        self.begin(now);
        self.finish(Err(ClientError::Disconnected));
        // Whatever the outcome, this connection is gone: the next operation needs
        // a new one and a reset.
        let client = &mut *self.client;
        client.conn.link = Link::Broken;
        if client.conn.fate == Status::Open {
            client.conn.fate = Status::Close;
        }
        client.out.clear();
    }
}

/// Implements [`Session`] and [`Request`] for an operation by driving its `run`,
/// giving `outcome` through `$map`.
macro_rules! operation {
    (impl[$($generics:tt)*] $op:ty => $output:ty, $map:expr) => {
        impl<$($generics)*> Session for $op {
            /// The request begins (on the client's connection as it is: call
            /// [`TransferClient::reset`] for a new one). Any other call begins it too.
            fn start(&mut self, now: Instant) {
                self.run.begin(now);
            }

            fn receive(&mut self, input: &[u8], now: Instant) -> usize {
                self.run.receive(input, now)
            }

            fn receive_finished(&mut self, now: Instant) {
                self.run.receive_finished(now);
            }

            fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
                self.run.transmit(space, now)
            }

            fn poll_timeout(&self) -> Option<Instant> {
                self.run.poll_timeout()
            }

            fn handle_timeout(&mut self, now: Instant) {
                self.run.handle_timeout(now);
            }

            fn status(&self) -> Status {
                self.run.status()
            }

            fn end(&mut self, now: Instant) {
                self.run.end(now);
            }

            fn no_delay(&self) -> bool {
                true
            }
        }

        impl<$($generics)*> Request for $op {
            type Output = Result<$output, ClientError>;

            fn outcome(&mut self) -> Option<Self::Output> {
                self.run.outcome.take().map($map)
            }
        }
    };
}

/// An upload in progress: [`TransferClient::put`]. Its outcome is the stored
/// file's size and CRC-32, once the server committed it.
#[must_use = "an operation does nothing unless driven"]
pub struct PutFile<'c, B, S, P>
where
    S: FileSource,
    P: FnMut(u64, u64),
{
    run: Run<'c, B, PutExchange<S, P>>,
}

operation!(
    impl['c, B: AsRef<[u8]> + AsMut<[u8]>, S: FileSource, P: FnMut(u64, u64)] PutFile<'c, B, S, P> => FileStat,
    |result| result
);

/// A download in progress: [`TransferClient::get`]. Its outcome is the file's
/// size and CRC-32, once it arrived whole and checked, and the sink completed it.
#[must_use = "an operation does nothing unless driven"]
pub struct GetFile<'c, B, K, P>
where
    K: FileSink,
    P: FnMut(u64, u64),
{
    run: Run<'c, B, GetExchange<K, P>>,
}

impl<B, K: FileSink, P: FnMut(u64, u64)> GetFile<'_, B, K, P> {
    /// The sink, to look at what arrived.
    pub fn sink(&self) -> &K {
        &self.run.exchange.sink
    }
}

operation!(
    impl['c, B: AsRef<[u8]> + AsMut<[u8]>, K: FileSink, P: FnMut(u64, u64)] GetFile<'c, B, K, P> => FileStat,
    |result| result
);

/// A listing in progress: [`TransferClient::list`]. Its outcome is the number of
/// files listed, at most the client's
/// [`with_max_entries`](TransferClient::with_max_entries): a listing longer
/// than that ends in [`ClientError::TooManyEntries`].
#[must_use = "an operation does nothing unless driven"]
pub struct ListFiles<'c, B, F>
where
    F: FnMut(Entry),
{
    run: Run<'c, B, ListExchange<F>>,
}

operation!(
    impl['c, B: AsRef<[u8]> + AsMut<[u8]>, F: FnMut(Entry)] ListFiles<'c, B, F> => u32,
    |result| result
);

/// A STAT in progress: [`TransferClient::stat`]. Its outcome is the file's size
/// and CRC-32.
#[must_use = "an operation does nothing unless driven"]
pub struct StatFile<'c, B> {
    run: Run<'c, B, SimpleExchange>,
}

operation!(
    impl['c, B: AsRef<[u8]> + AsMut<[u8]>] StatFile<'c, B> => FileStat,
    |result: Result<Option<FileStat>, ClientError>| result
        .and_then(|stat| stat.ok_or(ClientError::Unusable))
);

/// A DELETE in progress: [`TransferClient::delete`]. Its outcome is `Ok(())` once
/// the file is gone.
#[must_use = "an operation does nothing unless driven"]
pub struct DeleteFile<'c, B> {
    run: Run<'c, B, SimpleExchange>,
}

operation!(
    impl['c, B: AsRef<[u8]> + AsMut<[u8]>] DeleteFile<'c, B> => (),
    |result: Result<Option<FileStat>, ClientError>| result.map(|_| ())
);

macro_rules! debug_operation {
    ($name:literal, impl[$($generics:tt)*] $op:ty) => {
        impl<$($generics)*> fmt::Debug for $op {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct($name)
                    .field("client", &self.run.client)
                    .field("done", &self.run.done)
                    .finish_non_exhaustive()
            }
        }
    };
}

debug_operation!("PutFile", impl[B, S: FileSource, P: FnMut(u64, u64)] PutFile<'_, B, S, P>);
debug_operation!("GetFile", impl[B, K: FileSink, P: FnMut(u64, u64)] GetFile<'_, B, K, P>);
debug_operation!("ListFiles", impl[B, F: FnMut(Entry)] ListFiles<'_, B, F>);
debug_operation!("StatFile", impl[B] StatFile<'_, B>);
debug_operation!("DeleteFile", impl[B] DeleteFile<'_, B>);

/// Feeds up to [`LOCAL_WORK_PER_CALL`] bytes of `source` from `*at` to `end` into
/// `crc`; `true` once `end` is reached.
fn hash_some<S: FileSource>(
    source: &mut S,
    scratch: &mut [u8],
    at: &mut u64,
    end: u64,
    crc: &mut Crc32,
) -> Result<bool, ClientError> {
    let mut budget = LOCAL_WORK_PER_CALL;
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
    /// PUT_READY said the server holds every byte, and they are not ours: it
    /// refuses them on its own (ERROR ChecksumMismatch, the partial deleted),
    /// after which the upload starts over at 0. Nothing goes out before that
    /// answer, or a new PUT's would come after the operation ended.
    AwaitStaleRefused,
}

struct PutExchange<S, P> {
    source: S,
    progress: P,
    name: FileName,
    size: u64,
    crc: u32,
    resume: bool,
    step: PutStep,
    /// Bytes read from the source to compute a CRC.
    hashed: u64,
    /// The prefix the server reads to check a resume: the whole file until
    /// PUT_READY says how much of it the server holds.
    checked: u64,
}

impl<S: FileSource, P: FnMut(u64, u64)> Exchange for PutExchange<S, P> {
    type Output = FileStat;

    fn next<B: Buf>(&mut self, out: &mut Outbox<'_, '_, B>) -> Result<Next, ClientError> {
        match self.step {
            PutStep::Hash { mut at, mut crc } => {
                let from = at;
                let done = hash_some(
                    &mut self.source,
                    out.scratch(),
                    &mut at,
                    self.size,
                    &mut crc,
                );
                self.hashed = self.hashed.saturating_add(at.saturating_sub(from));
                let done = done?;
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
                })?;
                self.checked = if self.resume { self.size } else { 0 };
                self.step = PutStep::AwaitReady;
                Ok(Next::Staged)
            }
            PutStep::CheckPrefix {
                mut at,
                end,
                mut crc,
                expected,
            } => {
                let from = at;
                let done = hash_some(&mut self.source, out.scratch(), &mut at, end, &mut crc);
                self.hashed = self.hashed.saturating_add(at.saturating_sub(from));
                if !done? {
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
                let want = usize::try_from(left).map_or(room, |left| left.min(room));
                let source = &mut self.source;
                let n = out.send_data(next, want, |chunk| match source.read(next, chunk)? {
                    0 => Err(LocalError::SourceShort { at: next }.into()),
                    n => Ok(n),
                })?;
                let next = next.saturating_add(to_u64(n));
                self.step = PutStep::Send { next };
                (self.progress)(next, self.size);
                Ok(Next::Staged)
            }
            PutStep::AwaitReady | PutStep::AwaitDone | PutStep::AwaitStaleRefused => {
                Ok(Next::Waiting)
            }
        }
    }

    fn on_message<B: Buf>(
        &mut self,
        message: Message<'_>,
        _out: &mut Outbox<'_, '_, B>,
    ) -> Result<Option<FileStat>, ClientError> {
        if let Message::Error { code, value } = message {
            if matches!(self.step, PutStep::AwaitStaleRefused)
                && code == ErrorCode::ChecksumMismatch
            {
                self.resume = false;
                self.step = PutStep::Request;
                return Ok(None);
            }
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
                self.checked = offset;
                if offset > 0 && offset == self.size && prefix_crc != self.crc {
                    self.step = PutStep::AwaitStaleRefused;
                } else if offset == 0 || offset == self.size {
                    self.start_sending(offset);
                } else {
                    // What the source knows of its first bytes is not read again.
                    let (at, crc) = match self.source.crc_checkpoint(offset) {
                        Some((at, crc)) if at <= offset => (at, Crc32::resume(crc)),
                        _ => (0, Crc32::new()),
                    };
                    self.step = PutStep::CheckPrefix {
                        at,
                        end: offset,
                        crc,
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
        // Before the PUT, nothing is pending; checking the prefix, the server is
        // waiting for DATA and takes a new request as the end of this upload.
        // Once DATA went out, an ERROR for it (the store full or failing) may be
        // on its way, and would be taken for the next request's answer.
        matches!(
            self.step,
            PutStep::Hash { .. } | PutStep::Request | PutStep::CheckPrefix { .. }
        )
    }

    fn local_position(&self) -> Option<u64> {
        match self.step {
            PutStep::Hash { at, .. } | PutStep::CheckPrefix { at, .. } => Some(at),
            _ => None,
        }
    }

    fn credit(&self) -> u64 {
        self.hashed.saturating_add(self.checked)
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
    /// The last DATA was empty: it moved nothing, and another one right after
    /// it is a server stalling, not sending.
    empty_data: bool,
    /// The prefix the server reads to check a resume: the longest a GET asked
    /// to skip, unless the server said it holds less.
    checked: u64,
}

impl<K: FileSink, P: FnMut(u64, u64)> GetExchange<K, P> {
    fn request<B: Buf>(
        &mut self,
        offset: u64,
        held_crc: u32,
        out: &mut Outbox<'_, '_, B>,
    ) -> Result<(), ClientError> {
        out.send(&Message::Get {
            name: self.name,
            offset,
        })?;
        self.checked = self.checked.max(offset);
        self.step = GetStep::AwaitReady { offset, held_crc };
        Ok(())
    }

    /// The local copy is not a prefix of the server's file: forget it, GET from 0.
    fn start_over<B: Buf>(&mut self, out: &mut Outbox<'_, '_, B>) -> Result<(), ClientError> {
        self.sink.restart()?;
        self.request(0, 0, out)
    }

    /// Where a DATA frame at `offset` ends, the download standing at `next` of
    /// `size` (whether its bytes are kept or, after a stale resume, dropped);
    /// `None` for an empty DATA, which moves nothing. Refuses a DATA out of
    /// place, one past `size`, and an empty one right after another.
    fn data_end(
        &mut self,
        next: u64,
        size: u64,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Option<u64>, ProtocolError> {
        if offset != next {
            return Err(ProtocolError::BadOffset {
                expected: next,
                got: offset,
            });
        }
        // An empty DATA is allowed, but moves nothing: two in a row would let a
        // server hold the download without ever sending a byte, each frame
        // putting off the timeout.
        if bytes.is_empty() && next < size {
            if self.empty_data {
                return Err(ProtocolError::Unexpected(MessageType::Data));
            }
            self.empty_data = true;
            return Ok(None);
        }
        self.empty_data = false;
        next.checked_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX))
            .filter(|end| *end <= size)
            .map(Some)
            .ok_or(ProtocolError::TooMuchData)
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

    fn next<B: Buf>(&mut self, out: &mut Outbox<'_, '_, B>) -> Result<Next, ClientError> {
        if let GetStep::Start = self.step {
            let (offset, held_crc) = if self.resume {
                self.sink.held()?
            } else {
                self.sink.restart()?;
                (0, 0)
            };
            self.request(offset, held_crc, out)?;
            return Ok(Next::Staged);
        }
        Ok(Next::Waiting)
    }

    fn on_message<B: Buf>(
        &mut self,
        message: Message<'_>,
        out: &mut Outbox<'_, '_, B>,
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
                        self.request(0, 0, out)?;
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
                // The local copy is longer than the server's file, which had
                // nothing to read.
                self.checked = 0;
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
                let Some(end) = self.data_end(next, size, offset, bytes)? else {
                    return Ok(None);
                };
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
                let Some(end) = self.data_end(next, size, offset, bytes)? else {
                    return Ok(None);
                };
                if end == size {
                    self.request(0, 0, out)?;
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

    fn credit(&self) -> u64 {
        self.checked
    }
}

struct ListExchange<F> {
    on_entry: F,
    seen: u32,
    /// The most entries taken: a server sending more could go on for ever.
    max: u32,
    sent: bool,
}

impl<F: FnMut(Entry)> Exchange for ListExchange<F> {
    type Output = u32;

    fn next<B: Buf>(&mut self, out: &mut Outbox<'_, '_, B>) -> Result<Next, ClientError> {
        if self.sent {
            return Ok(Next::Waiting);
        }
        self.sent = true;
        out.send(&Message::List)?;
        Ok(Next::Staged)
    }

    fn on_message<B: Buf>(
        &mut self,
        message: Message<'_>,
        _out: &mut Outbox<'_, '_, B>,
    ) -> Result<Option<u32>, ClientError> {
        match message {
            Message::Entry { .. } if self.seen >= self.max => {
                Err(ClientError::TooManyEntries { max: self.max })
            }
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

    fn next<B: Buf>(&mut self, out: &mut Outbox<'_, '_, B>) -> Result<Next, ClientError> {
        if self.sent {
            return Ok(Next::Waiting);
        }
        self.sent = true;
        out.send(&match self.request {
            SimpleRequest::Stat(name) => Message::Stat { name },
            SimpleRequest::Delete(name) => Message::Delete { name },
        })?;
        Ok(Next::Staged)
    }

    fn on_message<B: Buf>(
        &mut self,
        message: Message<'_>,
        _out: &mut Outbox<'_, '_, B>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::SliceSink;
    use crate::wire::crc32::crc32;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    /// A staging buffer, and the frames an exchange made into it.
    struct Staging {
        out: Outgoing<Vec<u8>>,
    }

    impl Staging {
        fn new() -> Self {
            Self {
                out: Outgoing::new(vec![0; 256]),
            }
        }

        /// Runs `f` with an outbox over the staging buffer alone, as a frame is
        /// made while the caller offers no send space.
        fn with<R>(&mut self, f: impl FnOnce(&mut Outbox<'_, '_, Vec<u8>>) -> R) -> R {
            let mut sender = Sender::new(&mut self.out, &mut []);
            let mut outbox = Outbox {
                sender: &mut sender,
                frame_limit: 128,
            };
            f(&mut outbox)
        }

        /// The body of the frame staged.
        fn take(&mut self) -> Vec<u8> {
            let mut wire = vec![0; 300];
            let n = Sender::new(&mut self.out, &mut wire).used();
            wire[4..n].to_vec()
        }
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
            assert_eq!(at, rounds * LOCAL_WORK_PER_CALL);
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
            hashed: 0,
            checked: 0,
        };
        let mut staging = Staging::new();
        assert!(matches!(
            staging.with(|out| put.next(out)),
            Ok(Next::Staged)
        ));
        assert_eq!(
            Message::parse(&staging.take()),
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
        assert_eq!(staging.with(|out| put.on_message(ready, out)), Ok(None));
        assert!(matches!(
            staging.with(|out| put.next(out)),
            Ok(Next::Staged)
        ));
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
        assert_eq!(staging.with(|out| put.on_message(ready, out)), Ok(None));
        assert!(matches!(
            staging.with(|out| put.next(out)),
            Ok(Next::Staged)
        ));
        assert_eq!(
            Message::parse(&staging.take()),
            Ok(Message::Data {
                offset: 0,
                bytes: data
            })
        );
        assert!(matches!(
            staging.with(|out| put.next(out)),
            Ok(Next::Waiting)
        ));
        let done = Message::PutDone {
            size: 13,
            crc: crc32(data),
        };
        assert_eq!(
            staging.with(|out| put.on_message(done, out)),
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
            empty_data: false,
            checked: 0,
        };
        let mut staging = Staging::new();
        assert!(matches!(
            staging.with(|out| get.next(out)),
            Ok(Next::Staged)
        ));
        let ready = Message::GetReady {
            size: 4,
            crc: crc32(b"abcd"),
            prefix_crc: 0,
        };
        assert_eq!(staging.with(|out| get.on_message(ready, out)), Ok(None));
        let skipped = Message::Data {
            offset: 1,
            bytes: b"bcd",
        };
        assert_eq!(
            staging.with(|out| get.on_message(skipped, out)),
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
            staging.with(|out| get.on_message(too_long, out)),
            Err(ProtocolError::TooMuchData.into())
        );
        assert!(!get.in_sync(), "the server is still sending");
    }

    #[test]
    fn a_stale_resume_s_drain_rejects_data_out_of_place_as_a_download_does() {
        let mut buf = [0u8; 16];
        let mut get = GetExchange {
            sink: SliceSink::new(&mut buf),
            progress: |_, _| {},
            name: name("f"),
            resume: true,
            step: GetStep::Drain { next: 3, size: 10 },
            empty_data: false,
            checked: 3,
        };
        let mut staging = Staging::new();
        let skipped = Message::Data {
            offset: 4,
            bytes: b"efghij",
        };
        assert_eq!(
            staging.with(|out| get.on_message(skipped, out)),
            Err(ProtocolError::BadOffset {
                expected: 3,
                got: 4
            }
            .into())
        );
        let too_long = Message::Data {
            offset: 3,
            bytes: b"defghijk",
        };
        assert_eq!(
            staging.with(|out| get.on_message(too_long, out)),
            Err(ProtocolError::TooMuchData.into())
        );
        // The rest of the file is dropped, and the GET from 0 goes out.
        let rest = Message::Data {
            offset: 3,
            bytes: b"defghij",
        };
        assert_eq!(staging.with(|out| get.on_message(rest, out)), Ok(None));
        assert_eq!(
            Message::parse(&staging.take()),
            Ok(Message::Get {
                name: name("f"),
                offset: 0
            })
        );
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

    #[test]
    fn upload_chunks_follow_the_server_limit_and_the_staging_buffer() {
        // (server's max_body, staging length): the DATA payload each frame carries.
        for (server, staging, chunk) in [(128, 4096, 119), (4096, 300, 287), (65_536, 1028, 1015)] {
            let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
            let mut put = PutExchange {
                source: &data[..],
                progress: |_, _| {},
                name: name("f"),
                size: 3000,
                crc: crc32(&data),
                resume: false,
                step: PutStep::Send { next: 0 },
                hashed: 0,
                checked: 0,
            };
            let mut out = Outgoing::new(vec![0u8; staging]);
            let mut next = 0;
            while next < 3000 {
                let mut wire = vec![0u8; 70_000];
                let mut sender = Sender::new(&mut out, &mut wire);
                let mut outbox = Outbox {
                    sender: &mut sender,
                    frame_limit: server,
                };
                assert!(matches!(put.next(&mut outbox), Ok(Next::Staged)));
                let n = sender.used();
                let Ok(Message::Data { offset, bytes }) = Message::parse(&wire[4..n]) else {
                    panic!("not DATA");
                };
                assert_eq!(offset, next as u64);
                assert_eq!(bytes.len(), chunk.min(3000 - next));
                assert_eq!(bytes, &data[next..next + bytes.len()]);
                next += bytes.len();
            }
        }
    }
}
