//! The transfer server: one [`TransferServer`] session per connection, all of them
//! over one [`SharedStore`].
//!
//! Each connection is a small state machine: waiting for HELLO, then one request
//! at a time, frames strictly in order. A whole frame is handled only while
//! nothing of an earlier answer waits in staging, so every answer is made exactly
//! once, whole, and a connection never needs a second frame of memory. A download
//! reads one DATA frame at a time from the store, straight into the caller's send
//! space when it fits; a listing makes one ENTRY at a time.
//!
//! The reader may hold several whole frames and then a header that is too large:
//! the whole frames are handled first (an upload keeps every DATA among them),
//! then `ERROR FrameTooLarge` goes out and the connection closes.

use core::cell::{Cell, RefCell};
use core::fmt;

use super::TransferStats;
use super::common::{
    DEFAULT_MIN_TRANSFER_RATE, HEADER, HEADER_LEN, Outgoing, Sender, SetupError, framing, to_u64,
};
use crate::session::{FramedStats, Session, Status};
use crate::store::{FileName, Storage, StoreError, Upload};
use crate::time::{Duration, Instant, at_rate, sooner};
use crate::wire::frame::{FrameReader, ReadError};
use crate::wire::transfer::{
    DATA_HEADER_LEN, ErrorCode, MIN_MAX_BODY, Message, MessageType, PROTOCOL_VERSION,
    TransferError, emit_data_header,
};

/// How long a message other than an upload's DATA may take to arrive whole, from
/// its first byte, unless [`TransferServer::with_request_timeout`] says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One upload in progress somewhere in the pool: the name it holds.
///
/// A [`SharedStore`] has a fixed number of these; give it one per connection of
/// the pool (`[UploadLease::EMPTY; N]`). With fewer, a PUT that finds them all
/// taken is answered `Busy`, as if its name were being uploaded.
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
/// Every [`TransferServer`] of a pool holds a `&SharedStore`. The pool runs its
/// sessions on one thread, so a `RefCell` is all the sharing needs: no lock, no
/// `critical_section`. `L` is the array of [`UploadLease`]s given to
/// [`new`](Self::new); connections see it as a slice.
pub struct SharedStore<S, L: ?Sized = [UploadLease]> {
    store: RefCell<S>,
    stats: Cell<TransferStats>,
    leases: L,
}

impl<S, const N: usize> SharedStore<S, [UploadLease; N]> {
    /// Shares `store` among connections; at most `N` uploads run at once
    /// (`[UploadLease::EMPTY; N]`, one per connection of the pool).
    pub const fn new(store: S, leases: [UploadLease; N]) -> Self {
        Self {
            store: RefCell::new(store),
            stats: Cell::new(TransferStats::ZERO),
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

    /// Runs `f` on the store, for inspection or maintenance between calls into the
    /// sessions (a cleanup of its own, a test looking at what is stored). `None` if the store is in use, which only happens when called from
    /// inside a session's call.
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

    pub(crate) fn store<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut S) -> Result<R, E>,
    ) -> Result<R, E> {
        // A borrow is only ever held inside one call below, never across calls, so
        // the store is always free here; were it not, that is a bookkeeping bug.
        let mut store = self
            .store
            .try_borrow_mut()
            .map_err(|_| E::from(StoreError::Inconsistent))?;
        f(&mut store)
    }
}

impl<S: Storage> SharedStore<S> {
    /// Begins an upload of `name` in `store` (this one's, borrowed): if it
    /// finds no room, partials no upload holds give way ([`give_way`]),
    /// counted in [`TransferStats::partials_discarded`]. The transfer server's
    /// PUT and the TFTP server's WRQ both begin so.
    pub(crate) fn begin_upload_in(
        &self,
        store: &mut S,
        name: &FileName,
        size: u64,
        resume: bool,
    ) -> Result<Upload, StoreError> {
        let (begun, discarded) = match store.begin_upload(name, size, resume) {
            Err(refused @ (StoreError::Full { .. } | StoreError::TooManyFiles { .. })) => give_way(
                store,
                |partial| self.uploading(partial),
                name,
                size,
                resume,
                refused,
            ),
            begun => (begun, 0),
        };
        if discarded > 0 {
            self.update_stats(|s| {
                s.partials_discarded = s.partials_discarded.saturating_add(discarded);
            });
        }
        begun
    }
}

impl<S> SharedStore<S> {
    pub(crate) fn uploading(&self, name: &FileName) -> bool {
        self.leases
            .iter()
            .any(|lease| lease.name.get() == Some(*name))
    }

    /// Takes a free lease for `name`, or `None` if every lease is held.
    pub(crate) fn claim(&self, name: &FileName) -> Option<usize> {
        let index = self.leases.iter().position(|l| l.name.get().is_none())?;
        self.leases.get(index)?.name.set(Some(*name));
        Some(index)
    }

    pub(crate) fn release(&self, index: usize) {
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

/// The ERROR code and value that answer a failed storage operation
/// (`PROTOCOL.md` section 8). The store knows files, not the protocol.
pub(crate) const fn store_error_answer(error: StoreError) -> (ErrorCode, u64) {
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

/// Why a download stops before its next DATA.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
enum Stop {
    /// The file was replaced since GET_READY.
    Changed,
    Store(StoreError),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Changed => f.write_str("the file was replaced"),
            Self::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
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
        /// When PUT_READY went out: the minimum rate counts from there.
        began: Instant,
    },
    /// GET_READY sent; DATA frames for `[next, size)` of the file's `version` still
    /// to send.
    Download {
        name: FileName,
        next: u64,
        size: u64,
        version: u64,
        /// When GET_READY went out: the minimum rate counts from there.
        began: Instant,
    },
    /// ENTRY frames for the files after `after` still to send.
    Listing {
        after: Option<FileName>,
        count: u32,
        /// When LIST came: the minimum rate counts from there.
        began: Instant,
        /// Bytes of the ENTRY frames made so far.
        sent: u64,
    },
}

impl Op {
    /// Whether the next frame from the client may be handled: not while the
    /// server is answering on its own (a download, a listing, a commit).
    fn takes_frames(&self) -> bool {
        match self {
            Op::Idle => true,
            Op::Upload { upload, .. } => !upload.is_complete(),
            Op::Download { .. } | Op::Listing { .. } => false,
        }
    }
}

/// What the connection does with its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// Nothing more is read. `last` (an ERROR) goes out once staging is free, then
    /// the connection closes; if it is not all out by `abort_at`, it is reset.
    Closing {
        last: Option<(ErrorCode, u64)>,
        abort_at: Instant,
    },
    Aborted,
}

/// Everything of a connection but its frame reader and its outgoing frame, so
/// that a frame borrowed from the reader can be handled while this changes.
struct Core<'s, S> {
    shared: &'s SharedStore<S>,
    /// The largest body we accept, as announced in HELLO_OK.
    max_body: u32,
    request_timeout: Duration,
    /// The slowest average rate of a transfer, bytes per second (at least 1).
    min_rate: u32,
    /// The client's `max_body`: the largest DATA frame it takes.
    peer_max_body: u32,
    greeted: bool,
    op: Op,
    phase: Phase,
    /// When the first byte of the unfinished frame was taken.
    frame_started: Option<Instant>,
    /// The client has finished sending.
    peer_done: bool,
}

impl<S> Core<'_, S> {
    /// Gives back the upload's lease, if one runs, counting it abandoned; its
    /// partial stays for a resume.
    fn abandon_upload(&mut self) {
        if let Op::Upload { lease, .. } = self.op {
            self.shared.release(lease);
            self.shared
                .update_stats(|s| s.uploads_abandoned = s.uploads_abandoned.saturating_add(1));
            self.op = Op::Idle;
        }
    }
}

/// A connection dropped mid-upload (never ended: its task cancelled, say) gives
/// its lease back, or the file's name would stay busy and the lease taken for as
/// long as the store is shared.
impl<S> Drop for Core<'_, S> {
    fn drop(&mut self) {
        self.abandon_upload();
    }
}

/// One connection of the transfer server: a [`Session`] over a [`SharedStore`].
///
/// `B` is the buffer type of both the frame receive storage (the largest body the
/// server accepts is its length minus the 4-byte header) and the staging buffer
/// for outgoing frames (the largest DATA frame it sends has its length minus 4
/// body bytes, or less if the client accepts less): `[u8; N]`, `&'static mut
/// [u8]`, or a `Vec<u8>` on a host. A server's session is reused: [`start`](Session::start)
/// begins each new connection.
///
/// ```
/// use smolsock::session::{Session, Status};
/// use smolsock::store::RamStore;
/// use smolsock::time::Instant;
/// use smolsock::transfer::{SharedStore, TransferServer, UploadLease};
///
/// let shared = SharedStore::new(RamStore::<4, 4096>::new(), [UploadLease::EMPTY; 1]);
/// let mut server = TransferServer::new(&shared, [0u8; 260], [0u8; 260])?;
/// server.start(Instant::ZERO);
/// // HELLO, version 1, the client accepts 128-byte bodies.
/// let hello = [0, 0, 0, 10, 0x01, b'S', b'S', b'F', b'T', 1, 0, 0, 0, 128];
/// assert_eq!(server.receive(&hello, Instant::ZERO), hello.len());
/// let mut space = [0u8; 64];
/// let n = server.transmit(&mut space, Instant::ZERO);
/// // HELLO_OK, version 1, the server accepts 256-byte bodies.
/// assert_eq!(&space[..n], [0, 0, 0, 10, 0x81, b'S', b'S', b'F', b'T', 1, 0, 0, 1, 0]);
/// assert_eq!(server.status(), Status::Open);
/// # Ok::<(), smolsock::transfer::SetupError>(())
/// ```
#[must_use = "a session does nothing unless an adapter runs it"]
pub struct TransferServer<'s, S, B> {
    reader: FrameReader<B>,
    out: Outgoing<B>,
    core: Core<'s, S>,
}

impl<'s, S: Storage, B: AsRef<[u8]> + AsMut<[u8]>> TransferServer<'s, S, B> {
    /// A connection over `shared`, receiving frames into `receive` and staging
    /// outgoing frames in `staging`, with the [`DEFAULT_REQUEST_TIMEOUT`].
    ///
    /// Fails unless `receive` holds a 4-byte header and at least a 128-byte body
    /// and `staging` at least 128 bytes.
    pub fn new(shared: &'s SharedStore<S>, receive: B, staging: B) -> Result<Self, SetupError> {
        let (reader, max_body) = framing(receive, &staging)?;
        Ok(Self {
            reader,
            out: Outgoing::new(staging),
            core: Core {
                shared,
                max_body,
                request_timeout: DEFAULT_REQUEST_TIMEOUT,
                min_rate: DEFAULT_MIN_TRANSFER_RATE,
                peer_max_body: MIN_MAX_BODY,
                greeted: false,
                op: Op::Idle,
                phase: Phase::Open,
                frame_started: None,
                peer_done: false,
            },
        })
    }

    /// The same server with another request deadline: how long a message other
    /// than an upload's DATA may take to arrive whole, from its first byte.
    pub const fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.core.request_timeout = timeout;
        self
    }

    /// The request deadline.
    pub const fn request_timeout(&self) -> Duration {
        self.core.request_timeout
    }

    /// The same server with another minimum rate for uploads, downloads and
    /// listings, in bytes per second (0 is taken as 1).
    ///
    /// A transfer has the request deadline from its PUT_READY or GET_READY, plus
    /// a second for every `rate` bytes of the file it has reached (counted from
    /// the file's start, so a resume has time to check the part it skips; the
    /// DATA frame under way counts, an upload's bytes as they arrive, a
    /// download's as soon as the frame is made): a transfer that falls below
    /// the rate on average is answered `ERROR TooSlow` (the value is the rate)
    /// and the connection closes; an upload's partial stays for a resume. A
    /// download lasts until [`transmit`](Session::transmit) has handed out its
    /// last byte, so a peer that reads its last frame slowly is held to the
    /// same rate.
    /// A listing has the request deadline from its LIST, plus a second for
    /// every `rate` bytes of the ENTRY frames made. However slowly a peer
    /// trickles its bytes, or reads them, it cannot hold the connection for
    /// longer than the file's size, or the listing's, allows at this rate.
    pub const fn with_min_transfer_rate(mut self, rate: u32) -> Self {
        self.core.min_rate = if rate == 0 { 1 } else { rate };
        self
    }

    /// The minimum rate of an upload or a download, bytes per second.
    pub const fn min_transfer_rate(&self) -> u32 {
        self.core.min_rate
    }

    /// The largest frame body this connection accepts (announced in HELLO_OK).
    pub const fn max_body(&self) -> u32 {
        self.core.max_body
    }

    /// Framing counters of every connection this session served.
    pub fn framed_stats(&self) -> FramedStats {
        FramedStats {
            read: *self.reader.stats(),
            write: self.out.stats(),
        }
    }

    /// Does what can be done, sending into `space` (what waits in staging first):
    /// the frame an ending connection owes, the frames the operation makes on its
    /// own, then the client's frames in order, each only once the last answer is
    /// out of staging. Returns the bytes written into `space`.
    fn work(&mut self, space: &mut [u8], now: Instant) -> usize {
        let Self { reader, out, core } = self;
        let mut sender = Sender::new(out, space);
        while sender.ready() {
            match core.phase {
                Phase::Open => {}
                Phase::Closing {
                    last: Some((code, value)),
                    abort_at,
                } => {
                    core.phase = Phase::Closing {
                        last: None,
                        abort_at,
                    };
                    core.reply_error(&mut sender, code, value);
                    continue;
                }
                Phase::Closing { last: None, .. } | Phase::Aborted => break,
            }
            // What the server says on its own waits for room to say it in: made
            // earlier, a DATA frame would only be read ahead into staging.
            if sender.has_room() && core.produce(&mut sender) {
                continue;
            }
            if !core.op.takes_frames() {
                break;
            }
            if let Some(frame) = reader.frame() {
                core.on_frame(frame, &mut sender, now);
                reader.consume();
                continue;
            }
            if !core.between_frames(reader, now) {
                break;
            }
        }
        sender.used()
    }

    /// Notes when the unfinished frame began, after a feed that was `frames_before`
    /// frames into the stream.
    fn track_frame_start(&mut self, frames_before: u64, now: Instant) {
        if !self.reader.is_mid_frame() {
            self.core.frame_started = None;
        } else if self.reader.stats().frames != frames_before || self.core.frame_started.is_none() {
            self.core.frame_started = Some(now);
        }
    }

    /// When the unfinished frame must be whole, if a deadline runs for it.
    fn request_deadline(&self) -> Option<Instant> {
        let started = self.core.frame_started?;
        // An upload's DATA has the transfer's deadline; anything else has this.
        let uploading = matches!(self.core.op, Op::Upload { upload, .. } if !upload.is_complete());
        let is_data = self.reader.unfinished().get(HEADER_LEN) == Some(&(MessageType::Data as u8));
        if uploading && is_data && !self.reader.has_frame() {
            return None;
        }
        Some(started.saturating_add(self.core.request_timeout))
    }

    /// The transfer's deadline, the bytes of the frame under way counted.
    fn transfer_deadline(&self) -> Option<Instant> {
        let arriving = u64::try_from(self.reader.unfinished().len()).unwrap_or(u64::MAX);
        self.core.transfer_deadline(arriving, !self.out.is_empty())
    }

    /// The sooner of the request deadline and the transfer's.
    fn deadline(&self) -> Option<Instant> {
        sooner(self.request_deadline(), self.transfer_deadline())
    }
}

impl<S: Storage, B: AsRef<[u8]> + AsMut<[u8]>> Session for TransferServer<'_, S, B> {
    fn start(&mut self, _now: Instant) {
        self.core.end_op();
        self.reader.reset();
        self.out.clear();
        let core = &mut self.core;
        core.peer_max_body = MIN_MAX_BODY;
        core.greeted = false;
        core.phase = Phase::Open;
        core.frame_started = None;
        core.peer_done = false;
    }

    fn receive(&mut self, input: &[u8], now: Instant) -> usize {
        let mut taken = 0usize;
        loop {
            self.work(&mut [], now);
            if self.core.phase != Phase::Open || self.reader.error().is_some() {
                // Nothing after an oversize header, or once the connection ends,
                // is a frame: read and dropped.
                return input.len();
            }
            let Some(rest) = input.get(taken..).filter(|rest| !rest.is_empty()) else {
                return taken;
            };
            let frames_before = self.reader.stats().frames;
            let fed = self.reader.feed(rest);
            self.track_frame_start(frames_before, now);
            match fed {
                Ok(0) => return taken,
                Ok(n) => taken = taken.saturating_add(n),
                // The whole frames before the header are handled first, in `work`.
                Err(_) => {}
            }
        }
    }

    fn receive_finished(&mut self, now: Instant) {
        self.core.peer_done = true;
        self.work(&mut [], now);
    }

    fn transmit(&mut self, space: &mut [u8], now: Instant) -> usize {
        self.out.offered(space.len());
        self.work(space, now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self.core.phase {
            Phase::Open => self.deadline(),
            Phase::Closing { abort_at, .. } if self.status() == Status::Open => Some(abort_at),
            Phase::Closing { .. } | Phase::Aborted => None,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self.core.phase {
            Phase::Open => {
                if self
                    .transfer_deadline()
                    .is_some_and(|deadline| now >= deadline)
                {
                    crate::macros::net_info!(
                        "transfer: a transfer or listing fell below the minimum rate"
                    );
                    let core = &mut self.core;
                    core.shared.update_stats(|s| {
                        s.slow_transfers = s.slow_transfers.saturating_add(1);
                    });
                    let rate = u64::from(core.min_rate);
                    core.close_with(ErrorCode::TooSlow, rate, now);
                    self.work(&mut [], now);
                } else if self
                    .request_deadline()
                    .is_some_and(|deadline| now >= deadline)
                {
                    crate::macros::net_info!("transfer: a message missed the request deadline");
                    let core = &mut self.core;
                    core.shared.update_stats(|s| {
                        s.request_timeouts = s.request_timeouts.saturating_add(1);
                    });
                    let millis = core.request_timeout.total_millis();
                    core.close_with(ErrorCode::RequestTimeout, millis, now);
                    self.work(&mut [], now);
                }
            }
            Phase::Closing { abort_at, .. } => {
                if now >= abort_at && self.status() == Status::Open {
                    // The peer reads nothing: its last answer can never go out.
                    self.core.phase = Phase::Aborted;
                }
            }
            Phase::Aborted => {}
        }
    }

    fn status(&self) -> Status {
        match self.core.phase {
            Phase::Open => Status::Open,
            Phase::Closing { last: None, .. } if self.out.is_empty() => Status::Close,
            Phase::Closing { .. } => Status::Open,
            Phase::Aborted => Status::Abort,
        }
    }

    fn end(&mut self, _now: Instant) {
        // A download whose last frame went out is done, though no poll found
        // it so before the connection ended.
        if self.out.is_empty() {
            self.core.download_out();
        }
        // An upload cut off here keeps its partial for a resume.
        self.core.end_op();
        self.out.clear();
    }

    fn no_delay(&self) -> bool {
        true
    }

    fn drops_input(&self) -> bool {
        self.core.phase != Phase::Open
    }
}

impl<S, B> fmt::Debug for TransferServer<'_, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferServer")
            .field("max_body", &self.core.max_body)
            .field("greeted", &self.core.greeted)
            .field("op", &self.core.op)
            .field("phase", &self.core.phase)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Core<'_, S> {
    /// The largest body the client may send now: 128 until the HELLO exchange.
    fn limit(&self) -> u32 {
        if self.greeted {
            self.max_body
        } else {
            MIN_MAX_BODY
        }
    }

    fn reply<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        message: &Message<'_>,
    ) {
        // Only called while the sender is ready, and staging holds the largest
        // answer (79 bytes): this cannot fail.
        if sender.send(message).is_err() {
            crate::macros::net_error!("transfer: an answer found staging busy");
        }
    }

    fn reply_error<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        code: ErrorCode,
        value: u64,
    ) {
        self.shared.update_stats(|s| s.errors.count(code));
        crate::macros::net_debug!("transfer: ERROR {} ({})", code, value);
        self.reply(sender, &Message::Error { code, value });
    }

    fn reply_store_error<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        error: StoreError,
    ) {
        let (code, value) = store_error_answer(error);
        self.reply_error(sender, code, value);
    }

    /// When the upload, download or listing under way must be done by, at the minimum
    /// rate: the request deadline from its start, and a second more for every
    /// `min_rate` bytes of the file it has reached. An upload counts the bytes
    /// stored and `arriving`, those of the frame under way. A download counts
    /// the bytes of the DATA frames it has made, the one going out included,
    /// and is done only once the last of them has been handed out: while
    /// `staged` (a frame still waits in staging), its last frame is still
    /// under way. A resumed transfer counts from the start of the file, which
    /// gives a client the time to check the part it skips. A listing counts
    /// the bytes of the ENTRY frames it has made.
    fn transfer_deadline(&self, arriving: u64, staged: bool) -> Option<Instant> {
        let (began, reached) = match self.op {
            Op::Upload { upload, began, .. } if !upload.is_complete() => {
                (began, upload.written().saturating_add(arriving))
            }
            Op::Download {
                next, size, began, ..
            } if next < size || staged => (began, next),
            Op::Listing { began, sent, .. } => (began, sent),
            _ => return None,
        };
        Some(
            began
                .saturating_add(self.request_timeout)
                .saturating_add(at_rate(reached, self.min_rate)),
        )
    }

    /// Ends the connection: nothing more is read, `code` goes out as soon as
    /// staging is free, then the connection closes.
    fn close_with(&mut self, code: ErrorCode, value: u64, now: Instant) {
        self.end_op();
        self.close(Some((code, value)), now);
    }

    fn close(&mut self, last: Option<(ErrorCode, u64)>, now: Instant) {
        if self.phase == Phase::Open {
            self.phase = Phase::Closing {
                last,
                abort_at: now.saturating_add(self.request_timeout),
            };
        }
    }

    /// A download whose last DATA frame has gone out of staging (or that had
    /// none to send: a GET at the file's end) is done: counted, and over.
    /// Called only while staging is empty.
    fn download_out(&mut self) {
        if let Op::Download { next, size, .. } = self.op
            && next >= size
        {
            self.op = Op::Idle;
            self.shared
                .update_stats(|s| s.downloads_done = s.downloads_done.saturating_add(1));
        }
    }

    /// Ends whatever is going on (the connection ended, or a new one starts).
    fn end_op(&mut self) {
        self.end_upload();
        self.op = Op::Idle;
    }

    /// Ends an upload without a commit; its partial stays for a resume.
    fn end_upload(&mut self) {
        self.abandon_upload();
    }

    /// No whole frame is held: looks at what there is of the next one. `true` when
    /// the connection changed course (it now ends).
    fn between_frames<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        reader: &mut FrameReader<B>,
        now: Instant,
    ) -> bool {
        if matches!(reader.error(), Some(ReadError::Oversize { .. })) {
            // The bytes after a header that is too large cannot be trusted to be
            // frames; the whole frames before it have been handled.
            self.close_with(ErrorCode::FrameTooLarge, u64::from(self.limit()), now);
            return true;
        }
        let announced = HEADER.decode(reader.unfinished());
        if announced.is_some_and(|len| len > self.limit()) {
            // Over 128 before the HELLO exchange: said at once, not after waiting
            // for up to `max_body` bytes that will be refused anyway.
            self.close_with(ErrorCode::FrameTooLarge, u64::from(self.limit()), now);
            return true;
        }
        if self.peer_done {
            // A frame cut by the close is dropped whole: an upload keeps every
            // whole DATA before it.
            if reader.finish().is_err() {
                crate::macros::net_debug!("transfer: the client closed inside a frame");
            }
            self.end_op();
            self.close(None, now);
            return true;
        }
        false
    }

    /// Makes the next frame the current operation sends on its own (a commit's
    /// answer, a DATA frame, an ENTRY); `false` when there is none.
    fn produce<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, sender: &mut Sender<'_, B>) -> bool {
        match self.op {
            Op::Idle => false,
            Op::Upload {
                upload, crc, lease, ..
            } => {
                if !upload.is_complete() {
                    return false;
                }
                self.op = Op::Idle;
                self.shared.release(lease);
                match self.shared.store(|store| store.commit(&upload, crc)) {
                    Ok(stat) => {
                        self.shared
                            .update_stats(|s| s.uploads_done = s.uploads_done.saturating_add(1));
                        crate::macros::net_info!(
                            "transfer: stored {} ({} B)",
                            upload.name(),
                            stat.size
                        );
                        self.reply(
                            sender,
                            &Message::PutDone {
                                size: stat.size,
                                crc: stat.crc,
                            },
                        );
                    }
                    Err(e) => {
                        self.shared.update_stats(|s| {
                            s.uploads_abandoned = s.uploads_abandoned.saturating_add(1);
                        });
                        self.reply_store_error(sender, e);
                    }
                }
                true
            }
            Op::Download {
                name,
                next,
                size,
                version,
                ..
            } => {
                if next >= size {
                    self.download_out();
                    return false;
                }
                self.send_data(sender, name, next, size, version);
                true
            }
            Op::Listing {
                after,
                count,
                began,
                sent,
            } => {
                match self.shared.store(|store| store.next_entry(after.as_ref())) {
                    Ok(Some(entry)) => {
                        let message = Message::Entry {
                            name: entry.name,
                            size: entry.size,
                        };
                        let frame = HEADER_LEN.saturating_add(message.buffer_len());
                        self.op = Op::Listing {
                            after: Some(entry.name),
                            count: count.saturating_add(1),
                            began,
                            sent: sent.saturating_add(to_u64(frame)),
                        };
                        self.reply(sender, &message);
                    }
                    Ok(None) => {
                        self.op = Op::Idle;
                        self.shared
                            .update_stats(|s| s.listings = s.listings.saturating_add(1));
                        self.reply(sender, &Message::ListEnd { count });
                    }
                    Err(_) => {
                        self.op = Op::Idle;
                        self.reply_error(sender, ErrorCode::StorageFailure, 0);
                    }
                }
                true
            }
        }
    }

    /// Reads the next chunk of a download from the store straight into its DATA
    /// frame, after checking that the file is still the version GET_READY
    /// announced: a download never goes on with another version's bytes.
    fn send_data<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        name: FileName,
        next: u64,
        size: u64,
        version: u64,
    ) {
        let frame = (self.peer_max_body as usize).min(sender.max_body());
        let room = frame.saturating_sub(DATA_HEADER_LEN);
        let left = size.saturating_sub(next);
        let want = usize::try_from(left).map_or(room, |left| left.min(room));
        let shared = self.shared;
        let sent = sender.send_with(DATA_HEADER_LEN.saturating_add(want), |body| {
            shared.store(|store| {
                if store.version(&name)? != version {
                    return Err(Stop::Changed);
                }
                let chunk = body
                    .get_mut(DATA_HEADER_LEN..)
                    .ok_or(StoreError::Inconsistent)?;
                let n = store.read(&name, next, chunk)?;
                if n == 0 {
                    // The same version, shorter than it was: the store is wrong.
                    return Err(StoreError::Inconsistent.into());
                }
                emit_data_header(body, next).map_err(|_| StoreError::Inconsistent)?;
                Ok(DATA_HEADER_LEN.saturating_add(n))
            })
        });
        let stop = match sent {
            Ok(Ok(len)) => {
                let n = to_u64(len.saturating_sub(DATA_HEADER_LEN));
                if let Op::Download { next: sent, .. } = &mut self.op {
                    *sent = next.saturating_add(n);
                }
                self.shared
                    .update_stats(|s| s.bytes_out = s.bytes_out.saturating_add(n));
                return;
            }
            Ok(Err(stop)) => stop,
            Err(_) => Stop::Store(StoreError::Inconsistent),
        };
        // An ERROR takes the place of this DATA and ends the download.
        self.op = Op::Idle;
        crate::macros::net_warn!(
            "transfer: download of {} stopped at {}: {}",
            name,
            next,
            stop
        );
        let code = match stop {
            Stop::Changed => ErrorCode::Changed,
            Stop::Store(StoreError::NotFound) => ErrorCode::NotFound,
            Stop::Store(_) => ErrorCode::StorageFailure,
        };
        if matches!(code, ErrorCode::Changed | ErrorCode::NotFound) {
            self.shared.update_stats(|s| {
                s.downloads_changed = s.downloads_changed.saturating_add(1);
            });
        }
        self.reply_error(sender, code, 0);
    }

    /// One whole frame from the client. Only called while the sender is ready.
    fn on_frame<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        frame: &[u8],
        sender: &mut Sender<'_, B>,
        now: Instant,
    ) {
        if frame.len() > self.limit() as usize {
            // Over 128 bytes before the HELLO exchange (`PROTOCOL.md` section 3).
            self.close_with(ErrorCode::FrameTooLarge, u64::from(self.limit()), now);
            return;
        }
        let message = match Message::parse(frame) {
            Ok(message) => message,
            Err(e) => {
                // A broken frame ends an upload like any frame but a good DATA.
                self.end_upload();
                self.reply_error(sender, e.error_code(), 0);
                if e == TransferError::BadMagic {
                    // Whatever sent a bad magic does not speak this protocol.
                    self.close(None, now);
                }
                return;
            }
        };
        if let Message::Data { offset, bytes } = message {
            self.on_data(sender, offset, bytes);
            return;
        }
        // Any other frame ends an upload, as a close would, then counts as itself.
        self.end_upload();
        match message {
            Message::Hello { version, max_body } => self.hello(sender, version, max_body),
            _ if !self.greeted => self.reply_error(sender, ErrorCode::Unexpected, 0),
            Message::Put {
                name,
                size,
                crc,
                resume,
            } => self.put(sender, name, size, crc, resume, now),
            Message::Get { name, offset } => self.get(sender, name, offset, now),
            Message::List => {
                self.op = Op::Listing {
                    after: None,
                    count: 0,
                    began: now,
                    sent: 0,
                };
            }
            Message::Stat { name } => match self.shared.store(|store| store.stat(&name)) {
                Ok(stat) => {
                    self.shared
                        .update_stats(|s| s.stats = s.stats.saturating_add(1));
                    self.reply(
                        sender,
                        &Message::StatOk {
                            size: stat.size,
                            crc: stat.crc,
                        },
                    );
                }
                Err(e) => self.reply_store_error(sender, e),
            },
            Message::Delete { name } => self.delete(sender, name),
            // A server message from the client.
            _ => self.reply_error(sender, ErrorCode::Unexpected, 0),
        }
    }

    fn hello<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        version: u8,
        max_body: u32,
    ) {
        if self.greeted {
            self.reply_error(sender, ErrorCode::Unexpected, 0);
        } else if version < PROTOCOL_VERSION {
            self.reply_error(
                sender,
                ErrorCode::UnsupportedVersion,
                u64::from(PROTOCOL_VERSION),
            );
        } else {
            self.greeted = true;
            self.peer_max_body = max_body;
            self.shared
                .update_stats(|s| s.sessions = s.sessions.saturating_add(1));
            let ok = Message::HelloOk {
                version: PROTOCOL_VERSION,
                max_body: self.max_body,
            };
            self.reply(sender, &ok);
        }
    }

    fn put<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        name: FileName,
        size: u64,
        crc: u32,
        resume: bool,
        now: Instant,
    ) {
        if self.shared.uploading(&name) {
            return self.reply_error(sender, ErrorCode::Busy, 0);
        }
        let Some(lease) = self.shared.claim(&name) else {
            return self.reply_error(sender, ErrorCode::Busy, 0);
        };
        let shared = self.shared;
        let begun = shared.store(|store| shared.begin_upload_in(store, &name, size, resume));
        match begun {
            Ok(upload) => {
                let offset = upload.resumed_from();
                self.shared.update_stats(|s| {
                    s.uploads = s.uploads.saturating_add(1);
                    if offset > 0 {
                        s.uploads_resumed = s.uploads_resumed.saturating_add(1);
                    }
                });
                crate::macros::net_debug!("transfer: PUT {} ({} B) from {}", name, size, offset);
                self.op = Op::Upload {
                    upload,
                    crc,
                    lease,
                    began: now,
                };
                // An upload with every byte in commits at once (in `produce`),
                // after this PUT_READY has gone out.
                let ready = Message::PutReady {
                    offset,
                    prefix_crc: upload.resumed_crc(),
                };
                self.reply(sender, &ready);
            }
            Err(e) => {
                self.shared.release(lease);
                self.reply_store_error(sender, e);
            }
        }
    }

    fn on_data<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        offset: u64,
        bytes: &[u8],
    ) {
        let Op::Upload {
            mut upload,
            crc,
            lease,
            began,
        } = self.op
        else {
            // After an ERROR ended an upload, its DATA still in flight lands here;
            // so does DATA before HELLO (no upload can be in progress then).
            self.shared
                .update_stats(|s| s.data_discarded = s.data_discarded.saturating_add(1));
            return;
        };
        let len = to_u64(bytes.len());
        if offset != upload.written() {
            self.end_upload();
            return self.reply_error(sender, ErrorCode::BadOffset, upload.written());
        }
        if offset
            .checked_add(len)
            .is_none_or(|end| end > upload.size())
        {
            return self.too_much_data(sender, &upload);
        }
        match self.shared.store(|store| store.append(&mut upload, bytes)) {
            Ok(()) => {
                self.op = Op::Upload {
                    upload,
                    crc,
                    lease,
                    began,
                };
                self.shared
                    .update_stats(|s| s.bytes_in = s.bytes_in.saturating_add(len));
            }
            Err(StoreError::TooMuchData { .. }) => self.too_much_data(sender, &upload),
            Err(e) => {
                self.end_upload();
                self.reply_store_error(sender, e);
            }
        }
    }

    /// A client that sends more than it announced is not trusted with any of its
    /// bytes: the partial goes.
    fn too_much_data<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        upload: &Upload,
    ) {
        self.end_upload();
        let _ = self
            .shared
            .store(|store| store.discard_upload(upload.name()));
        self.reply_error(sender, ErrorCode::TooMuchData, upload.size());
    }

    fn get<B: AsRef<[u8]> + AsMut<[u8]>>(
        &mut self,
        sender: &mut Sender<'_, B>,
        name: FileName,
        offset: u64,
        now: Instant,
    ) {
        // One borrow of the store: the size, the CRCs and the version are of one
        // version of the file.
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
            Ok((stat, prefix_crc, store.version(&name)?))
        });
        match ready {
            Ok((stat, prefix_crc, version)) => {
                self.shared
                    .update_stats(|s| s.downloads = s.downloads.saturating_add(1));
                crate::macros::net_debug!(
                    "transfer: GET {} ({} B) from {}",
                    name,
                    stat.size,
                    offset
                );
                self.op = Op::Download {
                    name,
                    next: offset,
                    size: stat.size,
                    version,
                    began: now,
                };
                let ready = Message::GetReady {
                    size: stat.size,
                    crc: stat.crc,
                    prefix_crc,
                };
                self.reply(sender, &ready);
            }
            Err(e) => self.reply_store_error(sender, e),
        }
    }

    fn delete<B: AsRef<[u8]> + AsMut<[u8]>>(&mut self, sender: &mut Sender<'_, B>, name: FileName) {
        if self.shared.uploading(&name) {
            return self.reply_error(sender, ErrorCode::Busy, 0);
        }
        match self.shared.store(|store| store.delete(&name)) {
            Ok(()) => {
                self.shared
                    .update_stats(|s| s.deletes = s.deletes.saturating_add(1));
                self.reply(sender, &Message::DeleteOk);
            }
            Err(e) => self.reply_store_error(sender, e),
        }
    }
}

/// An upload of `name` found no room (`refused`, `Full` or `TooManyFiles`):
/// partials that no upload holds (`held` says which are; left by clients that
/// went away) give way, in name order, one at a time until it fits, but only
/// if all of them together would make the room it lacks (`PROTOCOL.md` section
/// 7). Returns the store's last answer and how many partials went.
fn give_way<S: Storage + ?Sized>(
    store: &mut S,
    held: impl Fn(&FileName) -> bool,
    name: &FileName,
    size: u64,
    resume: bool,
    refused: StoreError,
) -> (Result<Upload, StoreError>, u64) {
    // The partials that may go: not this name's (begin_upload counts its room
    // as free already) and not one an upload holds.
    let next_idle = |store: &S, mut after: Option<FileName>| {
        while let Ok(Some(entry)) = store.next_partial(after.as_ref()) {
            if entry.name != *name && !held(&entry.name) {
                return Some(entry);
            }
            after = Some(entry.name);
        }
        None
    };
    // Would they make room? Bytes are the sum, with this name's partial's,
    // which the upload may take over though `Full`'s `free` leaves it out,
    // beyond any the store holds over its limit. Entries are one a partial,
    // this name's too (the upload takes its place), beyond any over the limit:
    // a store refused for bytes may be over its entries too (it checks bytes
    // first), and one that is not needs a partial to go all the same.
    // A resume over this name's partial takes no entry: the upload keeps it.
    let (mut room, mut entries, mut kept, mut after) = (0u64, 0u64, false, None::<FileName>);
    while let Ok(Some(entry)) = store.next_partial(after.as_ref()) {
        let own = entry.name == *name;
        if own || !held(&entry.name) {
            room = room.saturating_add(entry.size);
            entries = entries.saturating_add(1);
            kept |= own & resume & (entry.size <= size);
        }
        after = Some(entry.name);
    }
    let (over_bytes, over_entries) = store.over_limits();
    let bytes = match refused {
        StoreError::Full { free } => free.saturating_add(room) >= size.saturating_add(over_bytes),
        _ => true,
    };
    if !bytes || (!kept && entries <= over_entries) {
        return (Err(refused), 0);
    }
    let (mut begun, mut discarded, mut after) = (Err(refused), 0u64, None);
    while let (Err(StoreError::Full { .. } | StoreError::TooManyFiles { .. }), Some(entry)) =
        (&begun, next_idle(store, after))
    {
        after = Some(entry.name);
        if store.discard_upload(&entry.name).is_ok() {
            discarded = discarded.saturating_add(1);
            begun = store.begin_upload(name, size, resume);
        }
    }
    (begun, discarded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RamStore;
    use crate::wire::crc32::crc32;

    type Store = RamStore<4, 65_536>;
    type Server<'s> = TransferServer<'s, Store, Vec<u8>>;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    fn encode(message: &Message<'_>) -> Vec<u8> {
        let mut frame = vec![0; 4 + message.buffer_len()];
        let n = message.emit(&mut frame[4..]).unwrap();
        frame[..4].copy_from_slice(&(n as u32).to_be_bytes());
        frame
    }

    fn error(code: ErrorCode, value: u64) -> Vec<u8> {
        encode(&Message::Error { code, value })
    }

    /// A connection's server with `receive` bytes of frame storage (the limit it
    /// announces is 4 less) and `staging` bytes of staging.
    fn server<'s>(shared: &'s SharedStore<Store>, receive: usize, staging: usize) -> Server<'s> {
        let mut s = TransferServer::new(shared, vec![0; receive], vec![0; staging]).unwrap();
        s.start(Instant::ZERO);
        s
    }

    /// Offers `bytes` (all must be taken), then collects what the server sends
    /// through spaces of `space` bytes until it sends nothing more.
    fn exchange_in<S: Storage>(
        s: &mut TransferServer<'_, S, Vec<u8>>,
        bytes: &[u8],
        space: usize,
        now: Instant,
    ) -> Vec<u8> {
        assert_eq!(s.receive(bytes, now), bytes.len());
        let mut wire = Vec::new();
        let mut buf = vec![0u8; space];
        for _ in 0..100_000 {
            let n = s.transmit(&mut buf, now);
            if n == 0 {
                return wire;
            }
            wire.extend_from_slice(&buf[..n]);
        }
        panic!("the server still sending after 100,000 calls");
    }

    fn exchange<S: Storage>(s: &mut TransferServer<'_, S, Vec<u8>>, bytes: &[u8]) -> Vec<u8> {
        exchange_in(s, bytes, 100_000, Instant::ZERO)
    }

    fn hello<S: Storage>(s: &mut TransferServer<'_, S, Vec<u8>>, max_body: u32) {
        let answer = exchange(
            s,
            &encode(&Message::Hello {
                version: 1,
                max_body,
            }),
        );
        assert_eq!(
            answer,
            encode(&Message::HelloOk {
                version: 1,
                max_body: s.max_body()
            })
        );
    }

    /// Splits a server's output into message bodies.
    fn bodies(wire: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        out
    }

    fn store_file(shared: &SharedStore<Store>, file: &str, data: &[u8]) {
        shared
            .with_store(|store| {
                let mut upload = store
                    .begin_upload(&name(file), data.len() as u64, false)
                    .unwrap();
                store.append(&mut upload, data).unwrap();
                store.commit(&upload, crc32(data)).unwrap();
            })
            .unwrap();
    }

    fn put(file: &str, size: u64, crc: u32, resume: bool) -> Vec<u8> {
        encode(&Message::Put {
            name: name(file),
            size,
            crc,
            resume,
        })
    }

    fn data(offset: u64, bytes: &[u8]) -> Vec<u8> {
        encode(&Message::Data { offset, bytes })
    }

    fn ready(offset: u64, prefix_crc: u32) -> Vec<u8> {
        encode(&Message::PutReady { offset, prefix_crc })
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
    fn buffers_decide_the_announced_limit() {
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
        assert_eq!(server.request_timeout(), DEFAULT_REQUEST_TIMEOUT);
        let server = server.with_request_timeout(Duration::from_secs(3));
        assert_eq!(server.request_timeout(), Duration::from_secs(3));
        assert!(server.no_delay());
    }

    #[test]
    fn a_second_upload_of_a_name_is_busy_until_the_first_ends() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]);
        let (mut a, mut b) = (server(&shared, 260, 256), server(&shared, 260, 256));
        hello(&mut a, 256);
        hello(&mut b, 256);
        let put = put("x", 3, crc32(b"abc"), false);
        let busy = error(ErrorCode::Busy, 0);
        assert_eq!(exchange(&mut a, &put), ready(0, 0));
        assert_eq!(exchange(&mut b, &put), busy);
        assert_eq!(
            exchange(&mut b, &encode(&Message::Delete { name: name("x") })),
            busy
        );
        // The connection ends: its lease goes, its partial stays.
        a.end(Instant::ZERO);
        assert_eq!(exchange(&mut b, &put), ready(0, 0));
        assert_eq!(shared.with_store(|s| s.entries()), Some(1));
    }

    #[test]
    fn leases_run_out_as_busy() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let (mut a, mut b) = (server(&shared, 260, 256), server(&shared, 260, 256));
        hello(&mut a, 256);
        hello(&mut b, 256);
        assert_eq!(exchange(&mut a, &put("a", 1, 0, false)), ready(0, 0));
        assert_eq!(
            exchange(&mut b, &put("b", 1, 0, false)),
            error(ErrorCode::Busy, 0)
        );
    }

    #[test]
    fn a_connection_dropped_mid_upload_gives_its_lease_back() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut a = server(&shared, 260, 256);
        hello(&mut a, 256);
        assert_eq!(
            exchange(&mut a, &put("x", 3, crc32(b"abc"), false)),
            ready(0, 0)
        );
        assert_eq!(exchange(&mut a, &data(0, b"a")), b"");
        // Never ended, as when the task that ran it is cancelled.
        drop(a);
        assert_eq!(shared.stats().uploads_abandoned, 1);
        let mut b = server(&shared, 260, 256);
        hello(&mut b, 256);
        assert_eq!(
            exchange(&mut b, &put("x", 3, crc32(b"abc"), true)),
            ready(1, crc32(b"a"))
        );
        // A connection dropped with no upload running gives back nothing.
        let idle = server(&shared, 260, 256);
        drop(idle);
        assert_eq!(
            exchange(&mut b, &data(1, b"bc")),
            encode(&Message::PutDone {
                size: 3,
                crc: crc32(b"abc")
            })
        );
        assert_eq!(shared.stats().uploads_abandoned, 1);
    }

    #[test]
    fn an_empty_upload_commits_right_after_put_ready() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 256);
        hello(&mut s, 256);
        let mut expected = ready(0, 0);
        expected.extend(encode(&Message::PutDone { size: 0, crc: 0 }));
        assert_eq!(exchange(&mut s, &put("empty", 0, 0, false)), expected);
        assert_eq!(shared.stats().uploads_done, 1);
        assert_eq!(s.status(), Status::Open);
    }

    #[test]
    fn download_chunks_respect_the_client_limit_and_the_staging_buffer() {
        // (client's max_body, staging length, payload per DATA frame).
        for (peer, staging, chunk) in [(128, 4096, 119), (4096, 300, 287), (4096, 4096, 4083)] {
            let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
            let file: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
            store_file(&shared, "f", &file);
            for space in [1, 100, 5000, 100_000] {
                let mut s = server(&shared, 1028, staging);
                hello(&mut s, peer);
                let get = encode(&Message::Get {
                    name: name("f"),
                    offset: 100,
                });
                let wire = exchange_in(&mut s, &get, space, Instant::ZERO);
                let bodies = bodies(&wire);
                assert_eq!(
                    Message::parse(&bodies[0]),
                    Ok(Message::GetReady {
                        size: 9000,
                        crc: crc32(&file),
                        prefix_crc: crc32(&file[..100])
                    })
                );
                let mut next = 100;
                for body in &bodies[1..] {
                    let Ok(Message::Data { offset, bytes }) = Message::parse(body) else {
                        panic!("not DATA");
                    };
                    assert_eq!(offset, next as u64);
                    assert_eq!(bytes.len(), chunk.min(9000 - next), "space {space}");
                    assert_eq!(bytes, &file[next..next + bytes.len()]);
                    next += bytes.len();
                }
                assert_eq!(next, 9000);
            }
            assert_eq!(shared.stats().downloads_done, 4);
        }
    }

    #[test]
    fn a_listing_goes_out_one_entry_per_frame_in_name_order() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        for n in ["b", "a", "c"] {
            store_file(&shared, n, b"");
        }
        let mut s = server(&shared, 132, 128);
        hello(&mut s, 128);
        let wire = exchange_in(&mut s, &encode(&Message::List), 7, Instant::ZERO);
        let mut expected: Vec<u8> = ["a", "b", "c"]
            .iter()
            .flat_map(|n| {
                encode(&Message::Entry {
                    name: name(n),
                    size: 0,
                })
            })
            .collect();
        expected.extend(encode(&Message::ListEnd { count: 3 }));
        assert_eq!(wire, expected);
    }

    #[test]
    fn whole_data_frames_before_an_oversize_header_are_kept() {
        // Three 10,000-byte DATA frames and a header over the limit, in one read.
        // Answering FrameTooLarge as soon as the reader saw the header dropped the
        // DATA frames still held before it, and a resume started short of 30,000.
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let file: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
        let mut s = server(&shared, 65_540, 1028);
        hello(&mut s, 1024);
        assert_eq!(
            exchange(&mut s, &put("big", 40_000, crc32(&file), false)),
            ready(0, 0)
        );
        let mut burst = Vec::new();
        for i in 0..3 {
            burst.extend(data(i * 10_000, &file[i as usize * 10_000..][..10_000]));
        }
        burst.extend_from_slice(&65_537u32.to_be_bytes());
        burst.extend_from_slice(&[0x10; 20]);
        let answer = exchange(&mut s, &burst);
        assert_eq!(answer, error(ErrorCode::FrameTooLarge, 65_536));
        assert_eq!(s.status(), Status::Close);
        assert_eq!(shared.stats().bytes_in, 30_000);
        s.end(Instant::ZERO);
        // The next connection resumes after every whole DATA frame.
        s.start(Instant::ZERO);
        hello(&mut s, 1024);
        assert_eq!(
            exchange(&mut s, &put("big", 40_000, crc32(&file), true)),
            ready(30_000, crc32(&file[..30_000]))
        );
    }

    #[test]
    fn an_oversize_header_is_answered_then_the_connection_closes() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        hello(&mut s, 128);
        assert_eq!(s.receive(&[0, 0, 1, 1, 0x10, 0, 0], Instant::ZERO), 7);
        // Nothing after the header is a frame: read and dropped.
        assert_eq!(s.receive(&[0, 0, 0, 1, 4], Instant::ZERO), 5);
        assert_eq!(s.status(), Status::Open, "the answer is not out yet");
        let mut space = [0u8; 10];
        assert_eq!(s.transmit(&mut space, Instant::ZERO), 10);
        assert_eq!(s.status(), Status::Open);
        let mut rest = [0u8; 10];
        assert_eq!(s.transmit(&mut rest, Instant::ZERO), 4);
        assert_eq!(s.status(), Status::Close);
        let mut wire = space.to_vec();
        wire.extend_from_slice(&rest[..4]);
        assert_eq!(wire, error(ErrorCode::FrameTooLarge, 256));
        assert_eq!(s.framed_stats().read.oversize, 1);
    }

    #[test]
    fn a_download_never_splices_two_versions_of_a_file() {
        let first: Vec<u8> = vec![b'1'; 1000];
        let second: Vec<u8> = vec![b'2'; 1000];
        for (change, code) in [
            ("replace", ErrorCode::Changed),
            ("delete", ErrorCode::NotFound),
        ] {
            let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
            store_file(&shared, "f", &first);
            let mut s = server(&shared, 260, 260);
            hello(&mut s, 128);
            let get = encode(&Message::Get {
                name: name("f"),
                offset: 0,
            });
            assert_eq!(s.receive(&get, Instant::ZERO), get.len());
            // GET_READY and the first DATA frame (4 + 17, then 4 + 128 bytes).
            let mut space = [0u8; 153];
            assert_eq!(s.transmit(&mut space, Instant::ZERO), 153);
            let sent = bodies(&space);
            assert_eq!(
                Message::parse(&sent[1]),
                Ok(Message::Data {
                    offset: 0,
                    bytes: &first[..119]
                })
            );
            match change {
                "replace" => store_file(&shared, "f", &second),
                _ => shared
                    .with_store(|store| store.delete(&name("f")))
                    .unwrap()
                    .unwrap(),
            }
            // The next frame is not DATA of the second version: an ERROR ends it.
            let rest = exchange(&mut s, &[]);
            assert_eq!(rest, error(code, 0), "{change}");
            assert_eq!(shared.stats().downloads_changed, 1);
            assert_eq!(s.status(), Status::Open, "the connection goes on");
            let listing = exchange(&mut s, &encode(&Message::List));
            let count = u32::from(change == "replace");
            let last = encode(&Message::ListEnd { count });
            assert!(listing.ends_with(&last), "{change}");
        }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn a_message_must_arrive_whole_within_the_request_deadline() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        let hello = encode(&Message::Hello {
            version: 1,
            max_body: 128,
        });
        // A whole HELLO within the deadline, a byte every half second: answered.
        for (i, byte) in hello.iter().enumerate() {
            let now = Instant::from_millis(500 * i as u64);
            assert_eq!(s.poll_timeout(), (i > 0).then(|| at(10)));
            s.handle_timeout(now);
            assert_eq!(s.receive(&[*byte], now), 1);
        }
        assert_eq!(s.poll_timeout(), None, "no frame under way");
        assert!(bodies(&exchange_in(&mut s, &[], 64, at(9))).len() == 1);
        // The next request starts at 20 s and trickles past 30 s.
        let stat = encode(&Message::Stat { name: name("f") });
        for (i, byte) in stat[..6].iter().enumerate() {
            assert_eq!(s.receive(&[*byte], at(20 + i as u64)), 1);
            assert_eq!(s.poll_timeout(), Some(at(30)));
        }
        s.handle_timeout(at(29));
        assert_eq!(s.status(), Status::Open);
        s.handle_timeout(at(30));
        assert_eq!(
            exchange_in(&mut s, &[], 64, at(30)),
            error(ErrorCode::RequestTimeout, 10_000)
        );
        assert_eq!(s.status(), Status::Close);
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(shared.stats().request_timeouts, 1);
        assert_eq!(shared.stats().errors.get(ErrorCode::RequestTimeout), 1);
    }

    #[test]
    fn an_upload_s_data_has_the_transfer_s_deadline_and_other_messages_their_own() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        // 5 s from PUT_READY, and a second more for every 2 bytes.
        let mut s = server(&shared, 260, 128)
            .with_request_timeout(Duration::from_secs(5))
            .with_min_transfer_rate(2);
        hello(&mut s, 128);
        assert_eq!(
            exchange(&mut s, &put("f", 6, crc32(b"abcdef"), false)),
            ready(0, 0)
        );
        assert_eq!(s.poll_timeout(), Some(at(5)), "the transfer's deadline");
        let chunk = data(0, b"abc");
        // Until its type byte is in, a frame could be anything: its own deadline
        // runs too, and the sooner one is the one to wait for. The bytes of the
        // frame under way count for the upload.
        s.receive(&chunk[..4], at(1));
        assert_eq!(s.poll_timeout(), Some(at(6)));
        s.receive(&chunk[4..6], at(2));
        assert_eq!(s.poll_timeout(), Some(at(8)), "an upload's DATA");
        s.handle_timeout(at(4));
        s.receive(&chunk[6..], at(4));
        assert_eq!(shared.stats().bytes_in, 3);
        // Three bytes moved: a second and a half more.
        assert_eq!(s.poll_timeout(), Some(Instant::from_millis(6_500)));
        // A STAT in the middle of the upload will end it once whole; until then
        // the upload's deadline is the sooner.
        let stat = encode(&Message::Stat { name: name("f") });
        s.receive(&stat[..5], at(6));
        assert_eq!(s.poll_timeout(), Some(at(9)));
        s.receive(&stat[5..], at(6));
        assert_eq!(
            s.poll_timeout(),
            None,
            "the upload ended, nothing under way"
        );
        assert_eq!(
            exchange_in(&mut s, &[], 64, at(6)),
            error(ErrorCode::NotFound, 0),
            "a partial is not a file"
        );
        // A message's own deadline, with no upload.
        s.receive(&stat[..5], at(7));
        assert_eq!(s.poll_timeout(), Some(at(12)));
        s.handle_timeout(at(12));
        assert_eq!(
            exchange_in(&mut s, &[], 64, at(12)),
            error(ErrorCode::RequestTimeout, 5_000)
        );
        assert_eq!(s.status(), Status::Close);
        assert_eq!(shared.stats().slow_transfers, 0);
        s.end(at(12));
        // The partial stayed for a resume.
        s.start(at(30));
        hello(&mut s, 128);
        assert_eq!(
            exchange(&mut s, &put("f", 6, crc32(b"abcdef"), true)),
            ready(3, crc32(b"abc"))
        );
    }

    #[test]
    fn an_upload_that_trickles_below_the_minimum_rate_is_closed_and_can_resume() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        assert_eq!(s.min_transfer_rate(), DEFAULT_MIN_TRANSFER_RATE);
        hello(&mut s, 128);
        let body = [7u8; 2_000];
        assert_eq!(
            exchange(&mut s, &put("f", 2_000, crc32(&body), false)),
            ready(0, 0)
        );
        // 10 s from PUT_READY, plus 2 ms for each byte at 500 B/s. The first 50
        // bytes at once, then one byte of the next DATA frame every 2 s: the 50
        // earned 100 ms, and the trickle never completes a frame.
        exchange(&mut s, &data(0, &body[..50]));
        assert_eq!(s.poll_timeout(), Some(Instant::from_millis(10_100)));
        let mut now = 0;
        let mut timeouts = 0;
        for byte in data(50, &body[50..150]) {
            now += 2;
            if s.poll_timeout().is_some_and(|t| t <= at(now)) {
                s.handle_timeout(at(now));
                timeouts += 1;
                break;
            }
            s.receive(&[byte], at(now));
        }
        assert_eq!(timeouts, 1);
        assert_eq!(now, 12, "the first check past 10.1 s");
        assert_eq!(
            exchange_in(&mut s, &[], 64, at(now)),
            error(ErrorCode::TooSlow, 500)
        );
        assert_eq!(s.status(), Status::Close);
        let stats = shared.stats();
        assert_eq!(stats.slow_transfers, 1);
        assert_eq!(stats.errors.get(ErrorCode::TooSlow), 1);
        assert_eq!(stats.request_timeouts, 0);
        s.end(at(now));
        // The lease is free and the partial is there: a new connection resumes.
        s.start(at(now));
        hello(&mut s, 128);
        assert_eq!(
            exchange(&mut s, &put("f", 2_000, crc32(&body), true)),
            ready(50, crc32(&body[..50]))
        );
    }

    #[test]
    fn an_upload_in_large_frames_counts_the_bytes_of_the_frame_under_way() {
        // 2,000 B/s, four times the minimum, in one 60 KB frame: none of it is
        // stored before the frame is whole, 30 s in.
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 65_540, 128);
        hello(&mut s, 128);
        let body = vec![5u8; 60_000];
        assert_eq!(
            exchange(&mut s, &put("f", 60_000, crc32(&body), false)),
            ready(0, 0)
        );
        let frame = data(0, &body);
        let mut now = 0u64;
        for piece in frame.chunks(200) {
            now += 100;
            let t = Instant::from_millis(now);
            if s.poll_timeout().is_some_and(|d| d <= t) {
                s.handle_timeout(t);
            }
            assert_eq!(shared.stats().slow_transfers, 0, "cut at {now} ms");
            s.receive(piece, t);
        }
        let done = exchange_in(&mut s, &[], 64, Instant::from_millis(now));
        assert_eq!(
            done,
            encode(&Message::PutDone {
                size: 60_000,
                crc: crc32(&body)
            })
        );
    }

    #[test]
    fn an_upload_at_the_minimum_rate_earns_its_time_and_finishes() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        // 1 s from PUT_READY, and a second for every 100 bytes.
        let mut s = server(&shared, 260, 128)
            .with_request_timeout(Duration::from_secs(1))
            .with_min_transfer_rate(100);
        hello(&mut s, 128);
        let body: Vec<u8> = (0..1_000u32).map(|i| i as u8).collect();
        assert_eq!(
            exchange(&mut s, &put("f", 1_000, crc32(&body), false)),
            ready(0, 0)
        );
        // 100 bytes a second, each chunk at the last moment its deadline allows:
        // 20 s in all, far past the first deadline, and never late.
        let mut offset = 0u64;
        let mut done = Vec::new();
        for chunk in body.chunks(100) {
            let deadline = s.poll_timeout().expect("a transfer under way");
            assert_eq!(deadline, Instant::from_secs(1 + offset / 100));
            s.handle_timeout(Instant::from_millis(deadline.total_millis() - 1));
            done = exchange_in(
                &mut s,
                &data(offset, chunk),
                64,
                Instant::from_millis(deadline.total_millis() - 1),
            );
            offset += chunk.len() as u64;
        }
        assert_eq!(s.status(), Status::Open);
        assert_eq!(
            done,
            encode(&Message::PutDone {
                size: 1_000,
                crc: crc32(&body)
            })
        );
        assert_eq!(s.poll_timeout(), None, "no transfer, no frame under way");
        assert_eq!(shared.stats().slow_transfers, 0);
    }

    #[test]
    fn a_download_read_below_the_minimum_rate_is_closed() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let body = [3u8; 4_000];
        {
            let mut s = server(&shared, 260, 128);
            hello(&mut s, 128);
            exchange(&mut s, &put("f", 4_000, crc32(&body), false));
            for (i, chunk) in body.chunks(100).enumerate() {
                exchange(&mut s, &data(i as u64 * 100, chunk));
            }
            assert_eq!(shared.stats().uploads_done, 1);
        }
        // 2 s from GET_READY, and a second for every 1000 bytes sent.
        let mut s = server(&shared, 260, 128)
            .with_request_timeout(Duration::from_secs(2))
            .with_min_transfer_rate(1_000);
        s.start(at(0));
        hello(&mut s, 128);
        let get = encode(&Message::Get {
            name: name("f"),
            offset: 0,
        });
        // Room for a little at a time.
        assert_eq!(s.receive(&get, at(0)), get.len());
        assert_eq!(s.poll_timeout(), Some(at(2)));
        let mut now = 0;
        let mut sent = 0usize;
        let mut last = Vec::new();
        while s.status() == Status::Open && now < 100_000 {
            now += 500;
            let t = Instant::from_millis(now);
            if s.poll_timeout().is_some_and(|d| d <= t) {
                s.handle_timeout(t);
            }
            // 100 bytes of room every half second: 200 B/s.
            let mut space = [0u8; 100];
            let n = s.transmit(&mut space, t);
            sent += n;
            last = space[..n].to_vec();
        }
        assert_eq!(s.status(), Status::Close);
        assert!(sent < 4_000, "the download did not finish: {sent} B");
        assert!(last.ends_with(&error(ErrorCode::TooSlow, 1_000)));
        assert_eq!(shared.stats().slow_transfers, 1);
        assert_eq!(shared.stats().downloads_done, 0);
        // Two seconds and then a second for every 1000 bytes it was given.
        assert!(now <= 2_000 + sent as u64 + 1_000, "closed at {now} ms");
    }

    /// A listing of 60 files, each ENTRY frame about 45 bytes, read through
    /// `room` bytes of send space every `step_ms` from LIST at 0 s on; the
    /// server allows 2 s and a second per 1000 bytes. Gives the time the
    /// reading stopped (the listing ended, or the connection), the bytes read,
    /// the last of them, and the counters.
    fn listing_read_at(room: usize, step_ms: u64) -> (u64, usize, Vec<u8>, TransferStats) {
        let shared = SharedStore::new(RamStore::<64, 4_096>::new(), [UploadLease::EMPTY; 1]);
        shared
            .with_store(|store| {
                for i in 0..60 {
                    let name = name(&format!("a-file-with-a-long-name-{i:02}"));
                    let upload = store.begin_upload(&name, 0, false).unwrap();
                    store.commit(&upload, crc32(b"")).unwrap();
                }
            })
            .unwrap();
        let mut s = TransferServer::new(&shared, vec![0; 260], vec![0; 128])
            .unwrap()
            .with_request_timeout(Duration::from_secs(2))
            .with_min_transfer_rate(1_000);
        s.start(at(0));
        hello(&mut s, 128);
        let list = encode(&Message::List);
        assert_eq!(s.receive(&list, at(0)), list.len());
        let (mut now, mut read, mut last) = (0, 0usize, Vec::new());
        while s.status() == Status::Open && shared.stats().listings == 0 && now < 100_000 {
            now += step_ms;
            let t = Instant::from_millis(now);
            if s.poll_timeout().is_some_and(|d| d <= t) {
                s.handle_timeout(t);
            }
            let mut space = vec![0u8; room];
            let n = s.transmit(&mut space, t);
            read += n;
            last = space[..n].to_vec();
        }
        (now, read, last, shared.stats())
    }

    #[test]
    fn a_listing_read_below_the_minimum_rate_is_closed() {
        // 100 bytes every half second: 200 B/s.
        let (now, read, last, stats) = listing_read_at(100, 500);
        assert!(
            last.ends_with(&error(ErrorCode::TooSlow, 1_000)),
            "{last:?}"
        );
        assert_eq!((stats.slow_transfers, stats.listings), (1, 0));
        // Two seconds, then a second for every 1000 bytes it was given (and
        // the frame under way).
        assert!(
            now <= 2_000 + read as u64 + 1_000,
            "closed at {now} ms, {read} B"
        );
    }

    #[test]
    fn a_listing_read_at_the_minimum_rate_ends_whole() {
        // 100 bytes every tenth of a second: 1000 B/s.
        let (now, read, _, stats) = listing_read_at(100, 100);
        assert_eq!(
            (stats.slow_transfers, stats.listings),
            (0, 1),
            "at {now} ms"
        );
        assert!(
            read > 2_000,
            "a listing longer than the 2 s alone allow: {read} B"
        );
    }

    /// A connection that has sent GET_READY for a 60,000-byte file and the first
    /// bytes of the one DATA frame that holds all of it, at 0 s: the whole file
    /// is in that frame, and most of the frame still waits in staging.
    fn a_download_s_last_frame_under_way(shared: &SharedStore<Store>) -> (Server<'_>, Vec<u8>) {
        store_file(shared, "f", &[5u8; 60_000]);
        let mut s = server(shared, 65_540, 65_540);
        hello(&mut s, 65_536);
        let get = encode(&Message::Get {
            name: name("f"),
            offset: 0,
        });
        assert_eq!(s.receive(&get, at(0)), get.len());
        let mut first = vec![0u8; 1_000];
        assert_eq!(s.transmit(&mut first, at(0)), 1_000);
        // 10 s from GET_READY, and a second for every 500 bytes of the frame.
        assert_eq!(s.poll_timeout(), Some(at(130)));
        (s, first)
    }

    #[test]
    fn a_download_s_last_frame_trickled_out_is_still_bound_by_the_rate() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let (mut s, first) = a_download_s_last_frame_under_way(&shared);
        let mut sent = first.len();
        // A byte every 59 s: never idle for 60 s.
        let mut now = 0u64;
        let mut slow_at = None;
        while s.status() == Status::Open && now < 3_600 {
            now += 59;
            if s.poll_timeout().is_some_and(|d| d <= at(now)) {
                s.handle_timeout(at(now));
                if slow_at.is_none() && shared.stats().slow_transfers > 0 {
                    slow_at = Some(now);
                }
            }
            let mut space = [0u8; 1];
            sent += s.transmit(&mut space, at(now));
        }
        assert_ne!(
            s.status(),
            Status::Open,
            "after {now} s: {sent} bytes read, poll_timeout {:?}",
            s.poll_timeout()
        );
        assert_eq!(slow_at, Some(177), "the first check past 130 s");
        // The ERROR can only follow the whole frame, which does not go out in
        // the request deadline that follows: the connection is reset.
        assert_eq!(s.status(), Status::Abort);
        assert_eq!(now, 236, "the first check past 187 s");
        let stats = shared.stats();
        assert_eq!(stats.slow_transfers, 1);
        assert_eq!(stats.errors.get(ErrorCode::TooSlow), 0, "never sent");
        assert_eq!(stats.request_timeouts, 0);
        assert_eq!(stats.downloads_done, 0);
    }

    #[test]
    fn a_download_s_last_frame_read_too_late_is_followed_by_too_slow() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let (mut s, first) = a_download_s_last_frame_under_way(&shared);
        s.handle_timeout(at(129));
        assert_eq!(s.status(), Status::Open);
        s.handle_timeout(at(130));
        // The rest of the frame, then the ERROR: never spliced into it.
        let mut wire = first;
        wire.extend(exchange_in(&mut s, &[], 4_096, at(130)));
        let expected = [
            encode(&Message::GetReady {
                size: 60_000,
                crc: crc32(&[5u8; 60_000]),
                prefix_crc: 0,
            }),
            data(0, &[5u8; 60_000]),
            error(ErrorCode::TooSlow, 500),
        ]
        .concat();
        assert!(
            wire == expected,
            "{} bytes, not {}",
            wire.len(),
            expected.len()
        );
        assert_eq!(s.status(), Status::Close);
        let stats = shared.stats();
        assert_eq!(stats.slow_transfers, 1);
        assert_eq!(stats.errors.get(ErrorCode::TooSlow), 1);
        assert_eq!(stats.downloads_done, 0);
    }

    #[test]
    fn a_peer_that_reads_nothing_is_reset_once_its_last_answer_cannot_go_out() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        s.receive(&[0, 0], at(0));
        s.handle_timeout(at(10));
        // The ERROR waits in staging: nobody calls transmit.
        assert_eq!(s.status(), Status::Open);
        assert_eq!(s.poll_timeout(), Some(at(20)));
        assert_eq!(s.receive(b"more", at(15)), 4, "read and dropped");
        s.handle_timeout(at(19));
        assert_eq!(s.status(), Status::Open);
        s.handle_timeout(at(20));
        assert_eq!(s.status(), Status::Abort);
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn data_before_hello_is_dropped_without_an_answer() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        assert_eq!(exchange(&mut s, &data(0, &[7; 119])), b"");
        assert_eq!(shared.stats().data_discarded, 1);
        assert_eq!(s.status(), Status::Open);
        hello(&mut s, 128);
    }

    #[test]
    fn a_body_over_128_before_hello_is_frame_too_large() {
        let too_long = data(0, &[7; 120]);
        for bytes in [&too_long[..], &too_long[..4]] {
            let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
            let mut s = server(&shared, 1028, 128);
            assert_eq!(
                exchange(&mut s, bytes),
                error(ErrorCode::FrameTooLarge, 128)
            );
            assert_eq!(s.status(), Status::Close);
        }
        // After the HELLO in the stream, the server's own limit holds, even if the
        // frame arrived before HELLO_OK could have.
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 1028, 128);
        let mut pipelined = encode(&Message::Hello {
            version: 1,
            max_body: 128,
        });
        pipelined.extend(&too_long);
        let answer = exchange(&mut s, &pipelined);
        assert_eq!(
            answer,
            encode(&Message::HelloOk {
                version: 1,
                max_body: 1024
            })
        );
        assert_eq!(shared.stats().data_discarded, 1);
    }

    #[test]
    fn a_bad_magic_after_hello_ok_is_a_bad_message_and_closes() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        hello(&mut s, 128);
        let mut again = encode(&Message::Hello {
            version: 1,
            max_body: 128,
        });
        assert_eq!(exchange(&mut s, &again), error(ErrorCode::Unexpected, 0));
        assert_eq!(s.status(), Status::Open);
        again[5] = b'X';
        assert_eq!(exchange(&mut s, &again), error(ErrorCode::BadMessage, 0));
        assert_eq!(s.status(), Status::Close);
    }

    #[test]
    fn a_put_with_an_unknown_flag_and_a_bad_name_is_a_bad_message() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        hello(&mut s, 128);
        let mut body = vec![MessageType::Put as u8, 0x03];
        body.extend_from_slice(&[0; 12]);
        body.extend_from_slice(&[2, b'.', b'.']);
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend(&body);
        assert_eq!(exchange(&mut s, &frame), error(ErrorCode::BadMessage, 0));
        frame[5] = 0x01;
        assert_eq!(exchange(&mut s, &frame), error(ErrorCode::InvalidName, 0));
        assert_eq!(s.status(), Status::Open);
    }

    #[test]
    fn a_put_refused_full_keeps_the_partial() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        // 100 bytes left free.
        store_file(&shared, "a", &vec![1; 65_436]);
        let mut s = server(&shared, 260, 128);
        hello(&mut s, 128);
        let body = [7u8; 60];
        assert_eq!(
            exchange(&mut s, &put("p", 60, crc32(&body), false)),
            ready(0, 0)
        );
        assert_eq!(exchange(&mut s, &data(0, &body[..10])), b"");
        s.end(at(0));
        s.start(at(0));
        hello(&mut s, 128);
        // 101 bytes do not fit even in the room the partial's 60 would give
        // back. The answer counts the bytes free with the partial kept.
        assert_eq!(
            exchange(&mut s, &put("p", 101, 0, false)),
            error(ErrorCode::Full, 40)
        );
        assert_eq!(
            exchange(&mut s, &put("p", 60, crc32(&body), true)),
            ready(10, crc32(&body[..10]))
        );
    }

    #[test]
    fn a_frame_cut_by_the_close_keeps_the_whole_data_before_it() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 260, 128);
        hello(&mut s, 128);
        assert_eq!(exchange(&mut s, &put("f", 9, 0, false)), ready(0, 0));
        let mut bytes = data(0, b"abc");
        bytes.extend(&data(3, b"def")[..8]);
        assert_eq!(s.receive(&bytes, at(0)), bytes.len());
        s.receive_finished(at(0));
        assert_eq!(s.status(), Status::Close);
        assert_eq!(s.framed_stats().read.truncated, 1);
        s.end(at(0));
        s.start(at(1));
        hello(&mut s, 128);
        assert_eq!(
            exchange(&mut s, &put("f", 9, 0, true)),
            ready(3, crc32(b"abc"))
        );
    }

    /// The partials in `shared`'s store, by name.
    fn partials(shared: &SharedStore<Store>) -> Vec<String> {
        shared
            .with_store(|store| {
                let (mut found, mut after) = (Vec::new(), None::<FileName>);
                while let Some(entry) = store.next_partial(after.as_ref()).unwrap() {
                    found.push(entry.name.as_str().to_owned());
                    after = Some(entry.name);
                }
                found
            })
            .unwrap()
    }

    /// A client that announces `size` bytes of `file`, gets PUT_READY and goes
    /// away without sending a byte.
    fn abandon(shared: &SharedStore<Store>, file: &str, size: u64) {
        let mut hog = server(shared, 260, 256);
        hello(&mut hog, 256);
        assert_eq!(exchange(&mut hog, &put(file, size, 0, false)), ready(0, 0));
        hog.end(Instant::ZERO);
    }

    #[test]
    fn an_abandoned_partial_gives_way_to_an_upload_that_needs_its_room() {
        // The partial reserves the whole store: kept, nobody could store a file
        // again (nor find its name to DELETE it: a partial is not listed).
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]);
        abandon(&shared, "x7f3a", 65_536);
        let mut s = server(&shared, 260, 256);
        hello(&mut s, 256);
        let file = b"hello, world\n";
        assert_eq!(
            exchange(&mut s, &put("notes.txt", 13, crc32(file), false)),
            ready(0, 0)
        );
        assert_eq!(partials(&shared), ["notes.txt"]);
        assert_eq!(shared.stats().partials_discarded, 1);
    }

    #[test]
    fn a_partial_gives_way_for_an_entry_too() {
        // Every entry taken, one of them an abandoned partial: it goes.
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]);
        for file in ["a", "b", "c"] {
            store_file(&shared, file, b"x");
        }
        abandon(&shared, "old", 10);
        let mut s = server(&shared, 260, 256);
        hello(&mut s, 256);
        assert_eq!(
            exchange(&mut s, &put("new", 1, crc32(b"y"), false)),
            ready(0, 0)
        );
        assert_eq!(partials(&shared), ["new"]);
        assert_eq!(shared.stats().partials_discarded, 1);
    }

    #[test]
    fn a_partial_stays_while_an_upload_holds_it_or_if_its_room_would_not_do() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 3]);
        // An upload in progress holds its partial: not discarded.
        let mut uploading = server(&shared, 260, 256);
        hello(&mut uploading, 256);
        assert_eq!(
            exchange(&mut uploading, &put("busy", 40_000, 0, false)),
            ready(0, 0)
        );
        // An abandoned one whose room, with what is free, is still too little.
        abandon(&shared, "small", 1_000);
        let mut s = server(&shared, 260, 256);
        hello(&mut s, 256);
        let free = 65_536 - 40_000 - 1_000;
        assert_eq!(
            exchange(&mut s, &put("big", 30_000, 0, false)),
            error(ErrorCode::Full, free)
        );
        assert_eq!(partials(&shared), ["busy", "small"]);
        assert_eq!(shared.stats().partials_discarded, 0);
        // With the abandoned one's room it fits: that one goes, the held one stays.
        assert_eq!(
            exchange(&mut s, &put("fits", 25_000, 0, false)),
            ready(0, 0)
        );
        assert_eq!(partials(&shared), ["busy", "fits"]);
        assert_eq!(shared.stats().partials_discarded, 1);
    }

    #[test]
    fn the_room_of_the_names_own_partial_counts_towards_making_room() {
        // "x" and "y" abandoned, 30,000 B each of 65,536: a PUT of "x" (not a
        // resume) takes over its own partial's room, and needs "y"'s too.
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]);
        abandon(&shared, "x", 30_000);
        abandon(&shared, "y", 30_000);
        let mut s = server(&shared, 260, 256);
        hello(&mut s, 256);
        assert_eq!(exchange(&mut s, &put("x", 40_000, 0, false)), ready(0, 0));
        assert_eq!(partials(&shared), ["x"]);
        assert_eq!(shared.stats().partials_discarded, 1);
    }

    #[test]
    fn no_partial_goes_for_an_entry_when_the_bytes_would_still_not_fit() {
        // Every entry taken (one an abandoned 10 B partial), 534 B free: a PUT
        // of 1,000 B lacks an entry, and even with the partial's, the bytes.
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 2]);
        store_file(&shared, "big", &vec![7; 65_000]);
        store_file(&shared, "c1", b"x");
        store_file(&shared, "c2", b"x");
        abandon(&shared, "old", 10);
        let mut s = server(&shared, 260, 256);
        hello(&mut s, 256);
        let answer = exchange(&mut s, &put("new", 1_000, 0, false));
        assert_eq!(answer, error(ErrorCode::Full, 65_536 - 65_002 - 10));
        assert_eq!(partials(&shared), ["old"]);
        assert_eq!(shared.stats().partials_discarded, 0);
    }

    #[test]
    fn no_partial_goes_for_an_entry_when_the_bytes_would_still_not_fit_in_a_dir_store() {
        use crate::store::{DirLimits, DirStore};
        let dir = std::env::temp_dir().join(format!("smolsock-give-way-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let limits = DirLimits {
            max_total_bytes: 1_000,
            max_file_bytes: 1_000,
            max_files: 4,
        };
        let store = DirStore::open(&dir, limits).unwrap();
        let shared = SharedStore::new(store, [UploadLease::EMPTY; 2]);
        shared
            .with_store(|store| {
                for (file, len) in [("big", 900), ("c1", 1), ("c2", 1)] {
                    let data = vec![7u8; len];
                    let mut up = store.begin_upload(&name(file), len as u64, false).unwrap();
                    store.append(&mut up, &data).unwrap();
                    store.commit(&up, crc32(&data)).unwrap();
                }
                let mut old = store.begin_upload(&name("old"), 50, false).unwrap();
                store.append(&mut old, &[1; 10]).unwrap();
            })
            .unwrap();
        let mut s = TransferServer::new(&shared, vec![0; 260], vec![0; 256]).unwrap();
        s.start(Instant::ZERO);
        hello(&mut s, 256);
        let answer = exchange(&mut s, &put("new", 500, 0, false));
        let kept = dir.join(".old.part").exists();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(answer, error(ErrorCode::Full, 1_000 - 902 - 10));
        assert!(kept, "the partial went for nothing");
        assert_eq!(shared.stats().partials_discarded, 0);
    }

    #[test]
    fn answers_made_while_receiving_count_as_split_or_blocked_only_by_how_they_go_out() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let mut s = server(&shared, 1028, 1028);
        let hello = encode(&Message::Hello {
            version: 1,
            max_body: 1024,
        });
        // HELLO_OK is made in `receive`, with no send space: it waits whole and
        // goes out in one transmit with room for it.
        assert_eq!(s.receive(&hello, Instant::ZERO), hello.len());
        let mut space = [0u8; 4096];
        assert_eq!(s.transmit(&mut space, Instant::ZERO), 14);
        let w = s.framed_stats().write;
        assert_eq!(
            (w.frames, w.split_frames, w.blocked_writes),
            (1, 0, 0),
            "{w:?}"
        );
        // STAT_OK (4 + 13) made the same way, then offered no room (a blocked
        // write), 5 bytes (split), 5 more, the rest: split once, blocked once.
        store_file(&shared, "f", b"0123456789");
        let stat = encode(&Message::Stat { name: name("f") });
        assert_eq!(s.receive(&stat, Instant::ZERO), stat.len());
        assert_eq!(s.transmit(&mut [], Instant::ZERO), 0);
        assert_eq!(s.transmit(&mut space[..5], Instant::ZERO), 5);
        assert_eq!(s.transmit(&mut space[..5], Instant::ZERO), 5);
        assert!(s.transmit(&mut space, Instant::ZERO) > 0);
        let w = s.framed_stats().write;
        assert_eq!(
            (w.frames, w.split_frames, w.blocked_writes),
            (2, 1, 1),
            "{w:?}"
        );
    }

    #[test]
    fn a_download_whose_last_frame_was_made_is_done_even_if_the_connection_ends_then() {
        let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
        let file = b"0123456789";
        store_file(&shared, "f", file);
        let mut s = server(&shared, 1028, 1028);
        hello(&mut s, 1024);
        let get = encode(&Message::Get {
            name: name("f"),
            offset: 0,
        });
        assert_eq!(s.receive(&get, Instant::ZERO), get.len());
        // GET_READY (4 + 17) and the one DATA frame (4 + 9 + 10): exactly the
        // space, so no poll finds the download over before the connection ends.
        let mut space = [0u8; 44];
        assert_eq!(s.transmit(&mut space, Instant::ZERO), 44);
        assert_eq!(&space[34..], file);
        s.end(Instant::ZERO);
        let stats = shared.stats();
        assert_eq!(
            (stats.downloads, stats.downloads_done, stats.bytes_out),
            (1, 1, 10),
            "{stats}"
        );
        // A GET at the end: done once its GET_READY is out.
        let mut s = server(&shared, 1028, 1028);
        hello(&mut s, 1024);
        let at_end = encode(&Message::Get {
            name: name("f"),
            offset: 10,
        });
        exchange(&mut s, &at_end);
        let stats = shared.stats();
        assert_eq!((stats.downloads, stats.downloads_done), (2, 2), "{stats}");
    }
}
