//! The transfer server: one [`TransferServer`] per slot of a `TcpServer`, all of
//! them over one [`SharedStore`].
//!
//! Each connection is a small state machine: waiting for HELLO, then one request
//! at a time. Every answer is encoded into the connection's staging buffer and
//! stays there until the socket took all of it (`sendall`), and nothing else is
//! read or written meanwhile: a request is handled exactly once however full the
//! send buffer is, and the connection never needs a second frame of memory. A
//! download refills the staging buffer from the store one DATA frame at a time as
//! the socket drains; a listing does the same one ENTRY at a time.
//!
//! The server implements [`Handler`] itself instead of going through
//! [`Framed`](crate::net::Framed): an oversize frame header must be answered with
//! `ERROR FrameTooLarge` before the connection closes, and `Framed` resets the
//! connection at once (dropping any reply) when its reader sees one.

use core::cell::{Cell, RefCell};
use core::fmt;

use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;

use super::TransferStats;
use crate::net::{Connection, End, Flow, FramedStream, Handler, RecvError, SendError, StreamStats};
use crate::store::{FileName, Storage, StoreError, Upload};
use crate::wire::frame::{FormatError, HeaderFormat, ReadError};
use crate::wire::transfer::{
    DATA_HEADER_LEN, ErrorCode, MIN_MAX_BODY, Message, PROTOCOL_VERSION, TransferError,
    emit_data_header,
};

/// One upload in progress somewhere in the pool: the name it holds.
///
/// A [`SharedStore`] has a fixed number of these; give it one per slot of the
/// pool (`[UploadLease::EMPTY; N]`). With fewer, a PUT that finds them all taken is
/// answered `Busy`, as if its name were being uploaded.
#[derive(Debug)]
pub struct UploadLease {
    name: Cell<Option<FileName>>,
}

impl UploadLease {
    /// A lease nobody holds, to fill the array: `[UploadLease::EMPTY; N]`.
    // Each use of the constant is a new lease, which is the point here.
    #[allow(clippy::declare_interior_mutable_const)]
    pub const EMPTY: Self = Self {
        name: Cell::new(None),
    };
}

/// The store the connections of a pool share, the names being uploaded right now,
/// and the server-wide counters.
///
/// Every [`TransferServer`] of a pool holds a `&SharedStore`. The pool runs in one
/// poll loop on one thread, so a `RefCell` is all the sharing needs: no lock, no
/// `critical_section`. `L` is the array of [`UploadLease`]s given to
/// [`new`](Self::new); connections see it as a slice.
pub struct SharedStore<S, L: ?Sized = [UploadLease]> {
    store: RefCell<S>,
    stats: Cell<TransferStats>,
    leases: L,
}

impl<S, const N: usize> SharedStore<S, [UploadLease; N]> {
    /// Shares `store` among connections; at most `N` uploads run at once
    /// (`[UploadLease::EMPTY; N]`, one per slot of the pool).
    pub const fn new(store: S, leases: [UploadLease; N]) -> Self {
        Self {
            store: RefCell::new(store),
            stats: Cell::new(TransferStats {
                sessions: 0,
                uploads: 0,
                uploads_resumed: 0,
                uploads_done: 0,
                uploads_abandoned: 0,
                downloads: 0,
                downloads_done: 0,
                bytes_in: 0,
                bytes_out: 0,
                listings: 0,
                stats: 0,
                deletes: 0,
                data_discarded: 0,
                errors: super::ErrorCounts { counts: [0; 15] },
            }),
            leases,
        }
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store.into_inner()
    }
}

impl<S, L: ?Sized> SharedStore<S, L> {
    /// The counters so far.
    pub fn stats(&self) -> TransferStats {
        self.stats.get()
    }

    /// Runs `f` on the store, for inspection or maintenance between polls (a
    /// server's own cleanup of old partials, a test looking at what is stored).
    /// `None` if the store is in use, which only happens when called from inside
    /// a poll of this pool.
    pub fn with_store<R>(&self, f: impl FnOnce(&mut S) -> R) -> Option<R> {
        self.store
            .try_borrow_mut()
            .ok()
            .map(|mut store| f(&mut store))
    }

    fn update_stats(&self, f: impl FnOnce(&mut TransferStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn store<R>(&self, f: impl FnOnce(&mut S) -> Result<R, StoreError>) -> Result<R, StoreError> {
        // A borrow is only ever held inside one call below, never across a poll,
        // so the store is always free here; were it not, that is a bookkeeping bug.
        let mut store = self
            .store
            .try_borrow_mut()
            .map_err(|_| StoreError::Inconsistent)?;
        f(&mut store)
    }
}

impl<S> SharedStore<S> {
    fn uploading(&self, name: &FileName) -> bool {
        self.leases
            .iter()
            .any(|lease| lease.name.get() == Some(*name))
    }

    /// Takes a free lease for `name`, or `None` if every lease is held.
    fn claim(&self, name: &FileName) -> Option<usize> {
        let index = self.leases.iter().position(|l| l.name.get().is_none())?;
        self.leases.get(index)?.name.set(Some(*name));
        Some(index)
    }

    fn release(&self, index: usize) {
        if let Some(lease) = self.leases.get(index) {
            lease.name.set(None);
        }
    }
}

impl<S, L: ?Sized> fmt::Debug for SharedStore<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStore")
            .field("stats", &self.stats.get())
            .finish_non_exhaustive()
    }
}

/// Why a [`TransferServer`] could not be built from the buffers given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SetupError {
    /// The receive storage holds less than a 4-byte header and a 128-byte body.
    ReceiveStorageTooSmall {
        /// Its length.
        len: usize,
    },
    /// The staging buffer is shorter than the protocol's smallest frame body (128).
    StagingTooSmall {
        /// Its length.
        len: usize,
    },
    /// The frame format refused the storage.
    Format(FormatError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReceiveStorageTooSmall { len } => write!(
                f,
                "receive storage of {len} bytes is under 4 + {MIN_MAX_BODY}"
            ),
            Self::StagingTooSmall { len } => {
                write!(f, "staging buffer of {len} bytes is under {MIN_MAX_BODY}")
            }
            Self::Format(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SetupError {}

impl From<FormatError> for SetupError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

/// The frame body limit receive storage of `len` bytes allows, if it allows the
/// protocol's minimum.
pub(super) fn max_body_for(len: usize) -> Option<u32> {
    let header = HeaderFormat::NETWORK.header_len();
    let body = u32::try_from(len.checked_sub(header)?).unwrap_or(u32::MAX);
    (body >= MIN_MAX_BODY).then_some(body)
}

/// What a connection is doing between frames.
#[derive(Clone, Copy, Debug)]
enum Op {
    /// Waiting for the next request.
    Idle,
    /// PUT_READY sent; DATA frames go to `upload` until it is complete, then the
    /// partial is committed if its CRC-32 is `crc`.
    Upload {
        upload: Upload,
        crc: u32,
        lease: usize,
    },
    /// GET_READY sent; DATA frames for `[next, size)` still to send.
    Download {
        name: FileName,
        next: u64,
        size: u64,
    },
    /// ENTRY frames for the files after `after` still to send.
    Listing { after: Option<FileName>, count: u32 },
}

/// Everything of a connection but its frame reader, so that a frame borrowed from
/// the reader can be handled while this changes.
struct Session<'s, S, B> {
    shared: &'s SharedStore<S>,
    /// One frame body: the answer or DATA frame being sent.
    staging: B,
    /// Length of the body in `staging` still going out (0: none).
    outgoing: usize,
    /// The largest body we accept, as announced in HELLO_OK.
    max_body: u32,
    /// The client's `max_body`: the largest DATA frame it takes.
    peer_max_body: u32,
    greeted: bool,
    op: Op,
    /// Close once the answer in `staging` is out (FrameTooLarge, bad magic).
    close_after_send: bool,
}

/// One connection's share of the transfer server: a [`Handler`] for a slot of a
/// [`TcpServer`](crate::net::TcpServer). See the [module documentation](super) for
/// a pool on tcp/2121.
///
/// `B` is the buffer type of both the frame receive storage (the largest body the
/// server accepts is its length minus the 4-byte header) and the staging buffer
/// for outgoing frames: `[u8; N]`, `&'static mut [u8]`, or a `Vec<u8>` on a host.
/// A DATA frame sent is no longer than the staging buffer, the client's limit, or
/// the server's own receive limit (the framing shares one limit both ways), so
/// staging beyond the receive limit is never used.
pub struct TransferServer<'s, S, B> {
    stream: FramedStream<B>,
    session: Session<'s, S, B>,
}

impl<'s, S: Storage, B: AsRef<[u8]> + AsMut<[u8]>> TransferServer<'s, S, B> {
    /// A connection handler over `shared`, receiving frames into `receive` and
    /// staging outgoing frames in `staging`.
    ///
    /// Fails unless `receive` holds a 4-byte header and at least a 128-byte body
    /// and `staging` at least 128 bytes.
    pub fn new(shared: &'s SharedStore<S>, receive: B, staging: B) -> Result<Self, SetupError> {
        let len = receive.as_ref().len();
        let max_body = max_body_for(len).ok_or(SetupError::ReceiveStorageTooSmall { len })?;
        let staging_len = staging.as_ref().len();
        if staging_len < MIN_MAX_BODY as usize {
            return Err(SetupError::StagingTooSmall { len: staging_len });
        }
        let format = HeaderFormat::NETWORK.with_max_len(max_body)?;
        Ok(Self {
            stream: FramedStream::new(receive, format)?,
            session: Session {
                shared,
                staging,
                outgoing: 0,
                max_body,
                peer_max_body: MIN_MAX_BODY,
                greeted: false,
                op: Op::Idle,
                close_after_send: false,
            },
        })
    }

    /// The largest frame body this connection accepts (announced in HELLO_OK).
    pub fn max_body(&self) -> u32 {
        self.session.max_body
    }

    /// Framing counters of every connection this slot served.
    pub fn stream_stats(&self) -> StreamStats {
        self.stream.stats()
    }

    /// Does all the work there is: sends what waits, streams downloads and
    /// listings, and handles every whole frame that arrived.
    fn run(&mut self, socket: &mut tcp::Socket<'_>) -> Flow {
        loop {
            if self.session.outgoing > 0 {
                let body = self
                    .session
                    .staging
                    .as_ref()
                    .get(..self.session.outgoing)
                    .unwrap_or_default();
                match self.stream.send_frame(socket, body) {
                    Ok(()) => self.session.outgoing = 0,
                    Err(SendError::WouldBlock) => return Flow::Wait,
                    Err(SendError::NotConnected) => return Flow::Close,
                    // Every body we stage fits the frame format; this is a bug.
                    Err(SendError::Frame(_)) => return Flow::Abort,
                }
            }
            if self.session.close_after_send {
                return Flow::Close;
            }
            if self.session.produce() {
                continue;
            }
            if !self.stream.has_frame() {
                match self.stream.fill(socket) {
                    Ok(_) => {}
                    Err(RecvError::Frame(ReadError::Oversize { .. })) => {
                        self.session.frame_too_large();
                        continue;
                    }
                    Err(_) => return Flow::Close,
                }
            }
            let (reader, _) = self.stream.split();
            if let Some(frame) = reader.frame() {
                self.session.on_frame(frame);
                reader.consume();
                continue;
            }
            // No whole frame. If the peer has finished sending, a cut frame is
            // dropped whole (an upload keeps every whole DATA frame before it).
            if !socket.may_recv() && socket.recv_queue() == 0 && reader.finish().is_err() {
                self.session.end_upload();
                return Flow::Close;
            }
            return Flow::Continue;
        }
    }
}

impl<S: Storage, B: AsRef<[u8]> + AsMut<[u8]>> Handler for TransferServer<'_, S, B> {
    fn setup(&mut self, peer: IpEndpoint, _now: Instant) {
        log::debug!("transfer: connection from {peer}");
        self.stream.reset();
        self.session.end_op();
        self.session.outgoing = 0;
        self.session.greeted = false;
        self.session.peer_max_body = MIN_MAX_BODY;
        self.session.close_after_send = false;
    }

    fn configure_socket(&mut self, socket: &mut tcp::Socket<'_>) {
        FramedStream::<B>::configure(socket);
    }

    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow {
        let before = self.stream.stats();
        let flow = self.run(conn.socket());
        let after = self.stream.stats();
        let moved = after
            .read
            .bytes
            .saturating_sub(before.read.bytes)
            .saturating_add(after.write.bytes.saturating_sub(before.write.bytes));
        conn.mark_progress(usize::try_from(moved).unwrap_or(usize::MAX));
        flow
    }

    fn finish(&mut self, end: End) {
        log::debug!("transfer: connection {end}");
        // An upload cut off here keeps its partial for a resume.
        self.session.end_op();
        self.session.outgoing = 0;
    }

    fn wants_to_send(&self) -> bool {
        self.session.outgoing > 0
            || self.stream.send_pending()
            || match self.session.op {
                Op::Idle => false,
                Op::Upload { upload, .. } => upload.is_complete(),
                Op::Download { .. } | Op::Listing { .. } => true,
            }
    }
}

impl<S, B> fmt::Debug for TransferServer<'_, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferServer")
            .field("max_body", &self.session.max_body)
            .field("greeted", &self.session.greeted)
            .field("op", &self.session.op)
            .field("outgoing", &self.session.outgoing)
            .finish_non_exhaustive()
    }
}

/// The ERROR code and value that answer a failed storage operation
/// (`PROTOCOL.md` section 8). The store knows files, not the protocol.
pub(super) const fn store_error_answer(error: StoreError) -> (ErrorCode, u64) {
    match error {
        StoreError::NotFound => (ErrorCode::NotFound, 0),
        StoreError::Full { free } => (ErrorCode::Full, free),
        StoreError::TooManyFiles { max } => (ErrorCode::TooManyFiles, max),
        StoreError::FileTooLarge { max } => (ErrorCode::FileTooLarge, max),
        StoreError::InvalidName => (ErrorCode::InvalidName, 0),
        StoreError::BadOffset { expected } => (ErrorCode::BadOffset, expected),
        StoreError::TooMuchData { size } => (ErrorCode::TooMuchData, size),
        StoreError::ChecksumMismatch { computed } => (ErrorCode::ChecksumMismatch, computed as u64),
        StoreError::Incomplete { .. } | StoreError::Inconsistent => (ErrorCode::StorageFailure, 0),
        #[cfg(feature = "std")]
        StoreError::Io(_) => (ErrorCode::StorageFailure, 0),
    }
}

/// Sizes travel as `u64`; a `usize` always fits.
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl<S: Storage, B: AsRef<[u8]> + AsMut<[u8]>> Session<'_, S, B> {
    /// Stages `message` as the next frame to send.
    fn reply(&mut self, message: &Message<'_>) {
        match message.emit(self.staging.as_mut()) {
            Ok(len) => self.outgoing = len,
            // Staging holds at least 128 bytes and no answer is longer than 79.
            Err(e) => log::error!("transfer: cannot stage an answer: {e}"),
        }
    }

    fn reply_error(&mut self, code: ErrorCode, value: u64) {
        self.shared.update_stats(|s| s.errors.count(code));
        log::debug!("transfer: ERROR {code} ({value})");
        self.reply(&Message::Error { code, value });
    }

    fn reply_store_error(&mut self, error: StoreError) {
        let (code, value) = store_error_answer(error);
        self.reply_error(code, value);
    }

    /// The header of a frame announced more than `max_body`: say so, then close,
    /// since the bytes that follow cannot be trusted to be frames.
    fn frame_too_large(&mut self) {
        self.end_upload();
        self.op = Op::Idle;
        self.reply_error(ErrorCode::FrameTooLarge, u64::from(self.max_body));
        self.close_after_send = true;
    }

    /// Ends whatever is going on (the connection ended, or a new one starts).
    fn end_op(&mut self) {
        self.end_upload();
        self.op = Op::Idle;
    }

    /// Ends an upload without a commit; its partial stays for a resume.
    fn end_upload(&mut self) {
        if let Op::Upload { lease, .. } = self.op {
            self.shared.release(lease);
            self.shared
                .update_stats(|s| s.uploads_abandoned = s.uploads_abandoned.saturating_add(1));
            self.op = Op::Idle;
        }
    }

    /// Stages the next frame the current operation sends on its own (a commit's
    /// answer, a DATA frame, an ENTRY); `false` when there is none.
    fn produce(&mut self) -> bool {
        match self.op {
            Op::Idle => false,
            Op::Upload { upload, crc, lease } => {
                if !upload.is_complete() {
                    return false;
                }
                self.op = Op::Idle;
                self.shared.release(lease);
                match self.shared.store(|store| store.commit(&upload, crc)) {
                    Ok(stat) => {
                        self.shared
                            .update_stats(|s| s.uploads_done = s.uploads_done.saturating_add(1));
                        log::info!("transfer: stored {} ({} B)", upload.name(), stat.size);
                        self.reply(&Message::PutDone {
                            size: stat.size,
                            crc: stat.crc,
                        });
                    }
                    Err(e) => {
                        self.shared.update_stats(|s| {
                            s.uploads_abandoned = s.uploads_abandoned.saturating_add(1);
                        });
                        self.reply_store_error(e);
                    }
                }
                true
            }
            Op::Download { name, next, size } => {
                if next >= size {
                    self.op = Op::Idle;
                    self.shared
                        .update_stats(|s| s.downloads_done = s.downloads_done.saturating_add(1));
                    return false;
                }
                self.stage_data(name, next, size);
                true
            }
            Op::Listing { after, count } => {
                match self.shared.store(|store| store.next_entry(after.as_ref())) {
                    Ok(Some(entry)) => {
                        self.op = Op::Listing {
                            after: Some(entry.name),
                            count: count.saturating_add(1),
                        };
                        self.reply(&Message::Entry {
                            name: entry.name,
                            size: entry.size,
                        });
                    }
                    Ok(None) => {
                        self.op = Op::Idle;
                        self.shared
                            .update_stats(|s| s.listings = s.listings.saturating_add(1));
                        self.reply(&Message::ListEnd { count });
                    }
                    Err(_) => {
                        self.op = Op::Idle;
                        self.reply_error(ErrorCode::StorageFailure, 0);
                    }
                }
                true
            }
        }
    }

    /// Reads the next chunk of a download straight into the staging buffer behind
    /// a DATA header.
    fn stage_data(&mut self, name: FileName, next: u64, size: u64) {
        // The stream's writer shares the reader's limit, so our own `max_body`
        // bounds what we send as well as the client's and the staging buffer's.
        let frame_cap =
            (self.peer_max_body.min(self.max_body) as usize).min(self.staging.as_ref().len());
        let room = frame_cap.saturating_sub(DATA_HEADER_LEN);
        let left = size.saturating_sub(next);
        let want = usize::try_from(left).map_or(room, |left| left.min(room));
        let end = DATA_HEADER_LEN.saturating_add(want);
        let shared = self.shared;
        let read = match self.staging.as_mut().get_mut(DATA_HEADER_LEN..end) {
            Some(chunk) => shared.store(|store| store.read(&name, next, chunk)),
            None => Err(StoreError::Inconsistent),
        };
        match read {
            Ok(n) if n > 0 => {
                if emit_data_header(self.staging.as_mut(), next).is_err() {
                    self.op = Op::Idle;
                    self.reply_error(ErrorCode::StorageFailure, 0);
                    return;
                }
                self.outgoing = DATA_HEADER_LEN.saturating_add(n);
                let n = to_u64(n);
                self.op = Op::Download {
                    name,
                    next: next.saturating_add(n),
                    size,
                };
                self.shared
                    .update_stats(|s| s.bytes_out = s.bytes_out.saturating_add(n));
            }
            // The file shrank, vanished or could not be read since GET_READY.
            result => {
                self.op = Op::Idle;
                let code = match result {
                    Err(StoreError::NotFound) => ErrorCode::NotFound,
                    _ => ErrorCode::StorageFailure,
                };
                log::warn!("transfer: download of {name} broke at {next}: {result:?}");
                self.reply_error(code, 0);
            }
        }
    }

    /// One whole frame from the client. Only called with nothing staged.
    fn on_frame(&mut self, frame: &[u8]) {
        let message = match Message::parse(frame) {
            Ok(message) => message,
            Err(e) => {
                // A broken frame ends an upload like any frame but a good DATA.
                self.end_upload();
                self.reply_error(e.error_code(), 0);
                // Whatever sent a bad magic does not speak this protocol.
                self.close_after_send = matches!(e, TransferError::BadMagic);
                return;
            }
        };
        if let Message::Data { offset, bytes } = message {
            self.on_data(offset, bytes);
            return;
        }
        // Any other frame ends an upload, as a close would, then counts as itself.
        self.end_upload();
        match message {
            Message::Hello { version, max_body } => self.hello(version, max_body),
            _ if !self.greeted => self.reply_error(ErrorCode::Unexpected, 0),
            Message::Put {
                name,
                size,
                crc,
                resume,
            } => self.put(name, size, crc, resume),
            Message::Get { name, offset } => self.get(name, offset),
            Message::List => {
                self.op = Op::Listing {
                    after: None,
                    count: 0,
                };
            }
            Message::Stat { name } => match self.shared.store(|store| store.stat(&name)) {
                Ok(stat) => {
                    self.shared
                        .update_stats(|s| s.stats = s.stats.saturating_add(1));
                    self.reply(&Message::StatOk {
                        size: stat.size,
                        crc: stat.crc,
                    });
                }
                Err(e) => self.reply_store_error(e),
            },
            Message::Delete { name } => self.delete(name),
            // A server message from the client.
            _ => self.reply_error(ErrorCode::Unexpected, 0),
        }
    }

    fn hello(&mut self, version: u8, max_body: u32) {
        if self.greeted {
            self.reply_error(ErrorCode::Unexpected, 0);
        } else if version < PROTOCOL_VERSION {
            self.reply_error(ErrorCode::UnsupportedVersion, u64::from(PROTOCOL_VERSION));
        } else {
            self.greeted = true;
            self.peer_max_body = max_body;
            self.shared
                .update_stats(|s| s.sessions = s.sessions.saturating_add(1));
            self.reply(&Message::HelloOk {
                version: PROTOCOL_VERSION,
                max_body: self.max_body,
            });
        }
    }

    fn put(&mut self, name: FileName, size: u64, crc: u32, resume: bool) {
        if self.shared.uploading(&name) {
            return self.reply_error(ErrorCode::Busy, 0);
        }
        let Some(lease) = self.shared.claim(&name) else {
            return self.reply_error(ErrorCode::Busy, 0);
        };
        match self
            .shared
            .store(|store| store.begin_upload(&name, size, resume))
        {
            Ok(upload) => {
                let offset = upload.resumed_from();
                self.shared.update_stats(|s| {
                    s.uploads = s.uploads.saturating_add(1);
                    if offset > 0 {
                        s.uploads_resumed = s.uploads_resumed.saturating_add(1);
                    }
                });
                log::debug!("transfer: PUT {name} ({size} B) from {offset}");
                self.op = Op::Upload { upload, crc, lease };
                // An upload with every byte in commits at once (in `produce`),
                // after this PUT_READY has gone out.
                self.reply(&Message::PutReady {
                    offset,
                    prefix_crc: upload.resumed_crc(),
                });
            }
            Err(e) => {
                self.shared.release(lease);
                self.reply_store_error(e);
            }
        }
    }

    fn on_data(&mut self, offset: u64, bytes: &[u8]) {
        let Op::Upload {
            mut upload,
            crc,
            lease,
        } = self.op
        else {
            // After an ERROR ended an upload, its DATA still in flight lands here.
            self.shared
                .update_stats(|s| s.data_discarded = s.data_discarded.saturating_add(1));
            return;
        };
        let len = to_u64(bytes.len());
        if offset != upload.written() {
            self.end_upload();
            return self.reply_error(ErrorCode::BadOffset, upload.written());
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > upload.size())
        {
            return self.too_much_data(&upload);
        }
        match self.shared.store(|store| store.append(&mut upload, bytes)) {
            Ok(()) => {
                self.op = Op::Upload { upload, crc, lease };
                self.shared
                    .update_stats(|s| s.bytes_in = s.bytes_in.saturating_add(len));
            }
            Err(StoreError::TooMuchData { .. }) => self.too_much_data(&upload),
            Err(e) => {
                self.end_upload();
                self.reply_store_error(e);
            }
        }
    }

    /// A client that sends more than it announced is not trusted with any of its
    /// bytes: the partial goes.
    fn too_much_data(&mut self, upload: &Upload) {
        self.end_upload();
        let _ = self
            .shared
            .store(|store| store.discard_upload(upload.name()));
        self.reply_error(ErrorCode::TooMuchData, upload.size());
    }

    fn get(&mut self, name: FileName, offset: u64) {
        let ready = self.shared.store(|store| {
            let stat = store.stat(&name)?;
            if offset > stat.size {
                return Err(StoreError::BadOffset {
                    expected: stat.size,
                });
            }
            let prefix_crc = if offset == 0 {
                0
            } else {
                store.crc_prefix(&name, offset)?
            };
            Ok((stat, prefix_crc))
        });
        match ready {
            Ok((stat, prefix_crc)) => {
                self.shared
                    .update_stats(|s| s.downloads = s.downloads.saturating_add(1));
                log::debug!("transfer: GET {name} ({} B) from {offset}", stat.size);
                self.op = Op::Download {
                    name,
                    next: offset,
                    size: stat.size,
                };
                self.reply(&Message::GetReady {
                    size: stat.size,
                    crc: stat.crc,
                    prefix_crc,
                });
            }
            Err(e) => self.reply_store_error(e),
        }
    }

    fn delete(&mut self, name: FileName) {
        if self.shared.uploading(&name) {
            return self.reply_error(ErrorCode::Busy, 0);
        }
        match self.shared.store(|store| store.delete(&name)) {
            Ok(()) => {
                self.shared
                    .update_stats(|s| s.deletes = s.deletes.saturating_add(1));
                self.reply(&Message::DeleteOk);
            }
            Err(e) => self.reply_store_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RamStore;
    use crate::wire::crc32::crc32;

    type Store = RamStore<4, 4096>;

    fn session<'s>(shared: &'s SharedStore<Store>, staging: usize) -> Session<'s, Store, Vec<u8>> {
        Session {
            shared,
            staging: vec![0; staging],
            outgoing: 0,
            max_body: 1024,
            peer_max_body: MIN_MAX_BODY,
            greeted: false,
            op: Op::Idle,
            close_after_send: false,
        }
    }

    fn encode(message: &Message<'_>) -> Vec<u8> {
        let mut body = vec![0; message.buffer_len()];
        message.emit(&mut body).unwrap();
        body
    }

    /// Hands a frame to the session and takes what it staged.
    fn exchange(session: &mut Session<'_, Store, Vec<u8>>, request: &Message<'_>) -> Vec<u8> {
        session.on_frame(&encode(request));
        take(session)
    }

    fn take(session: &mut Session<'_, Store, Vec<u8>>) -> Vec<u8> {
        let staged = session.staging[..session.outgoing].to_vec();
        session.outgoing = 0;
        staged
    }

    fn hello(session: &mut Session<'_, Store, Vec<u8>>, max_body: u32) {
        let reply = exchange(
            session,
            &Message::Hello {
                version: 1,
                max_body,
            },
        );
        assert_eq!(
            Message::parse(&reply),
            Ok(Message::HelloOk {
                version: 1,
                max_body: 1024
            })
        );
    }

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn store_errors_map_to_documented_answers() {
        let cases = [
            (StoreError::NotFound, ErrorCode::NotFound, 0),
            (StoreError::Full { free: 7 }, ErrorCode::Full, 7),
            (
                StoreError::TooManyFiles { max: 4 },
                ErrorCode::TooManyFiles,
                4,
            ),
            (
                StoreError::FileTooLarge { max: 9 },
                ErrorCode::FileTooLarge,
                9,
            ),
            (StoreError::InvalidName, ErrorCode::InvalidName, 0),
            (
                StoreError::BadOffset { expected: 3 },
                ErrorCode::BadOffset,
                3,
            ),
            (
                StoreError::TooMuchData { size: 5 },
                ErrorCode::TooMuchData,
                5,
            ),
            (
                StoreError::ChecksumMismatch {
                    computed: 0xFFFF_FFFF,
                },
                ErrorCode::ChecksumMismatch,
                0xFFFF_FFFF,
            ),
            (
                StoreError::Incomplete {
                    written: 1,
                    size: 2,
                },
                ErrorCode::StorageFailure,
                0,
            ),
            (StoreError::Inconsistent, ErrorCode::StorageFailure, 0),
            #[cfg(feature = "std")]
            (
                StoreError::Io(std::io::ErrorKind::PermissionDenied),
                ErrorCode::StorageFailure,
                0,
            ),
        ];
        for (error, code, value) in cases {
            assert_eq!(store_error_answer(error), (code, value), "{error}");
        }
    }

    #[test]
    fn receive_storage_decides_the_announced_limit() {
        assert_eq!(max_body_for(131), None);
        assert_eq!(max_body_for(132), Some(128));
        assert_eq!(max_body_for(65_540), Some(65_536));
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        assert_eq!(
            TransferServer::new(&shared, vec![0; 131], vec![0; 128]).err(),
            Some(SetupError::ReceiveStorageTooSmall { len: 131 })
        );
        assert_eq!(
            TransferServer::new(&shared, vec![0; 132], vec![0; 127]).err(),
            Some(SetupError::StagingTooSmall { len: 127 })
        );
        let server = TransferServer::new(&shared, vec![0; 1028], vec![0; 128]).unwrap();
        assert_eq!(server.max_body(), 1024);
    }

    #[test]
    fn a_second_upload_of_a_name_is_busy_until_the_first_ends() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]);
        let (mut a, mut b) = (session(&shared, 256), session(&shared, 256));
        hello(&mut a, 256);
        hello(&mut b, 256);
        let put = Message::Put {
            name: name("x"),
            size: 3,
            crc: crc32(b"abc"),
            resume: false,
        };
        let ready = encode(&Message::PutReady {
            offset: 0,
            prefix_crc: 0,
        });
        let busy = encode(&Message::Error {
            code: ErrorCode::Busy,
            value: 0,
        });
        assert_eq!(exchange(&mut a, &put), ready);
        assert_eq!(exchange(&mut b, &put), busy);
        assert_eq!(exchange(&mut b, &Message::Delete { name: name("x") }), busy);
        // The connection ends: its lease goes, its partial stays.
        a.end_op();
        assert_eq!(exchange(&mut b, &put), ready);
        assert_eq!(shared.with_store(|s| s.entries()), Some(1));
    }

    #[test]
    fn leases_run_out_as_busy() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let (mut a, mut b) = (session(&shared, 256), session(&shared, 256));
        hello(&mut a, 256);
        hello(&mut b, 256);
        let put = |n: &str| Message::Put {
            name: name(n),
            size: 1,
            crc: 0,
            resume: false,
        };
        assert!(matches!(
            Message::parse(&exchange(&mut a, &put("a"))),
            Ok(Message::PutReady { .. })
        ));
        assert_eq!(
            Message::parse(&exchange(&mut b, &put("b"))),
            Ok(Message::Error {
                code: ErrorCode::Busy,
                value: 0
            })
        );
    }

    #[test]
    fn an_empty_upload_commits_right_after_put_ready() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = session(&shared, 256);
        hello(&mut s, 256);
        let put = Message::Put {
            name: name("empty"),
            size: 0,
            crc: 0,
            resume: false,
        };
        assert!(matches!(
            Message::parse(&exchange(&mut s, &put)),
            Ok(Message::PutReady { offset: 0, .. })
        ));
        assert!(s.produce());
        assert_eq!(
            Message::parse(&take(&mut s)),
            Ok(Message::PutDone { size: 0, crc: 0 })
        );
        assert!(!s.produce());
        assert_eq!(shared.stats().uploads_done, 1);
    }

    #[test]
    fn download_chunks_respect_every_limit() {
        // (client's max_body, staging length): the server's own limit is 1024.
        for (peer, staging, chunk) in [(128, 4096, 119), (4096, 300, 291), (4096, 4096, 1015)] {
            let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
            let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
            shared
                .with_store(|store| {
                    let mut upload = store.begin_upload(&name("f"), 3000, false).unwrap();
                    store.append(&mut upload, &data).unwrap();
                    store.commit(&upload, crc32(&data)).unwrap();
                })
                .unwrap();
            let mut s = session(&shared, staging);
            hello(&mut s, peer);
            let ready = exchange(
                &mut s,
                &Message::Get {
                    name: name("f"),
                    offset: 100,
                },
            );
            assert_eq!(
                Message::parse(&ready),
                Ok(Message::GetReady {
                    size: 3000,
                    crc: crc32(&data),
                    prefix_crc: crc32(&data[..100])
                })
            );
            let mut next = 100;
            while s.produce() {
                let frame = take(&mut s);
                let Ok(Message::Data { offset, bytes }) = Message::parse(&frame) else {
                    panic!("not DATA");
                };
                assert_eq!(offset, next as u64);
                assert_eq!(bytes.len(), chunk.min(3000 - next));
                assert_eq!(bytes, &data[next..next + bytes.len()]);
                next += bytes.len();
            }
            assert_eq!(next, 3000);
            assert_eq!(shared.stats().downloads_done, 1);
        }
    }

    #[test]
    fn a_listing_goes_out_one_entry_per_frame_in_name_order() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        for n in ["b", "a", "c"] {
            shared
                .with_store(|store| {
                    let upload = store.begin_upload(&name(n), 0, false).unwrap();
                    store.commit(&upload, 0).unwrap();
                })
                .unwrap();
        }
        let mut s = session(&shared, 128);
        hello(&mut s, 128);
        s.on_frame(&encode(&Message::List));
        let mut frames = Vec::new();
        while s.produce() {
            frames.push(take(&mut s));
        }
        let expected: Vec<Vec<u8>> = ["a", "b", "c"]
            .iter()
            .map(|n| {
                encode(&Message::Entry {
                    name: name(n),
                    size: 0,
                })
            })
            .chain([encode(&Message::ListEnd { count: 3 })])
            .collect();
        assert_eq!(frames, expected);
    }
}
