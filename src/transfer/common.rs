//! What the transfer server and client share: how their buffers decide the frame
//! limits, and the one outgoing frame a connection holds while it goes out.
//!
//! A frame is encoded once: straight into the caller's send space when all of it
//! fits there, else into the connection's staging buffer, from which it is handed
//! out over as many transmits as it takes. Nothing else is made while a frame
//! waits in staging, so two frames are never spliced and no answer is lost.

use core::fmt;

use crate::wire::frame::{FormatError, FrameReader, HeaderFormat, WriteStats};
use crate::wire::transfer::MIN_MAX_BODY;

/// The protocol's frame header: 4 bytes, big-endian (`PROTOCOL.md` section 3).
pub(crate) const HEADER: HeaderFormat = HeaderFormat::NETWORK;

/// Bytes of the frame header.
pub(crate) const HEADER_LEN: usize = HEADER.header_len();

/// The slowest an upload or a download may go on average, in bytes per second,
/// unless [`TransferServer::with_min_transfer_rate`](super::TransferServer::with_min_transfer_rate)
/// says otherwise: the minimum rate Apache's `mod_reqtimeout` sets for request
/// bodies by default. A [`TransferClient`](super::TransferClient) holds each of
/// its operations to the same rate unless
/// [`with_min_rate`](super::TransferClient::with_min_rate) says otherwise.
pub const DEFAULT_MIN_TRANSFER_RATE: u32 = 500;

/// Why a transfer server or client could not be built from the buffers given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SetupError {
    /// The receive storage holds less than a 4-byte header and a 128-byte body.
    ReceiveStorageTooSmall {
        /// Its length.
        len: usize,
    },
    /// The staging buffer is shorter than 128 bytes.
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
pub(crate) fn max_body_for(len: usize) -> Option<u32> {
    let body = u32::try_from(len.checked_sub(HEADER_LEN)?).unwrap_or(u32::MAX);
    (body >= MIN_MAX_BODY).then_some(body)
}

/// Checks both buffers and builds the frame reader; also gives the frame body
/// limit the receive storage allows (what HELLO or HELLO_OK announces).
pub(crate) fn framing<B: AsRef<[u8]> + AsMut<[u8]>>(
    receive: B,
    staging: &B,
) -> Result<(FrameReader<B>, u32), SetupError> {
    let len = receive.as_ref().len();
    let max_body = max_body_for(len).ok_or(SetupError::ReceiveStorageTooSmall { len })?;
    let staging_len = staging.as_ref().len();
    if staging_len < MIN_MAX_BODY as usize {
        return Err(SetupError::StagingTooSmall { len: staging_len });
    }
    let reader = FrameReader::new(receive, HEADER.with_max_len(max_body)?)?;
    Ok((reader, max_body))
}

/// Sizes travel as `u64`; a `usize` always fits.
pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The frame a connection has made and not yet handed out whole, in its staging
/// buffer, with the connection's sending counters.
pub(crate) struct Outgoing<B> {
    staging: B,
    /// The bytes waiting are `staging[start..end]`.
    start: usize,
    end: usize,
    stats: WriteStats,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> Outgoing<B> {
    pub(crate) const fn new(staging: B) -> Self {
        Self {
            staging,
            start: 0,
            end: 0,
            stats: WriteStats {
                frames: 0,
                body_bytes: 0,
                bytes: 0,
                split_frames: 0,
                blocked_writes: 0,
                too_large: 0,
            },
        }
    }

    /// Whether nothing waits: a new frame may be made.
    pub(crate) fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Forgets what waits (the connection is gone).
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// The largest frame body that can be staged.
    pub(crate) fn max_body(&self) -> usize {
        self.staging.as_ref().len().saturating_sub(HEADER_LEN)
    }

    /// The sending counters, over every connection.
    pub(crate) fn stats(&self) -> WriteStats {
        self.stats
    }

    /// The whole staging buffer, while nothing waits in it: room for local work.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        if self.is_empty() {
            self.staging.as_mut()
        } else {
            &mut []
        }
    }

    /// A transmit offers `len` bytes of send space: none while bytes wait is a
    /// blocked write.
    pub(crate) fn offered(&mut self, len: usize) {
        if len == 0 && !self.is_empty() {
            self.stats.blocked_writes = self.stats.blocked_writes.saturating_add(1);
        }
    }

    /// Copies waiting bytes into `space`; returns how many. A frame is split
    /// when its first write leaves some of it waiting (counted then, once).
    fn drain_into(&mut self, space: &mut [u8]) -> usize {
        let waiting = self
            .staging
            .as_ref()
            .get(self.start..self.end)
            .unwrap_or_default();
        let n = waiting.len().min(space.len());
        if n == 0 {
            return 0;
        }
        if let (Some(dst), Some(src)) = (space.get_mut(..n), waiting.get(..n)) {
            dst.copy_from_slice(src);
        }
        if self.start == 0 && n < waiting.len() {
            self.stats.split_frames = self.stats.split_frames.saturating_add(1);
        }
        self.start = self.start.saturating_add(n);
        if self.start >= self.end {
            self.clear();
        }
        n
    }
}

/// The staging buffer was busy: nothing was made. Only a bug gets this, since
/// frames are made only while [`Sender::ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Busy;

/// Where the frames made during one call go: straight into the caller's send
/// space while nothing waits in staging, else into staging.
pub(crate) struct Sender<'a, B> {
    out: &'a mut Outgoing<B>,
    space: &'a mut [u8],
    used: usize,
}

impl<'a, B: AsRef<[u8]> + AsMut<[u8]>> Sender<'a, B> {
    /// A sender into `space`, which first gets what waits from earlier calls
    /// (none: work done while receiving or at a timeout, whose frames wait in
    /// staging for a transmit).
    pub(crate) fn new(out: &'a mut Outgoing<B>, space: &'a mut [u8]) -> Self {
        let used = out.drain_into(space);
        Self { out, space, used }
    }

    /// Bytes written into the caller's space so far.
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Whether the caller's space has room left.
    pub(crate) fn has_room(&self) -> bool {
        self.used < self.space.len()
    }

    /// Whether a frame may be made: nothing of an earlier one waits.
    pub(crate) fn ready(&self) -> bool {
        self.out.is_empty()
    }

    /// The largest frame body that can be made.
    pub(crate) fn max_body(&self) -> usize {
        self.out.max_body()
    }

    /// Drops what waits in staging: the peer has finished and reads no more.
    pub(crate) fn discard(&mut self) {
        self.out.clear();
    }

    /// The staging buffer as scratch space, while it is free.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        self.out.scratch()
    }

    /// Makes one frame whose body `fill` writes into the slice it gets (of
    /// `max_len` bytes, at most [`max_body`](Self::max_body)), returning the body's
    /// real length (which this returns). When `fill` fails, nothing is sent.
    pub(crate) fn send_with<E>(
        &mut self,
        max_len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, Busy> {
        if !self.out.is_empty() || max_len > self.out.max_body() {
            return Err(Busy);
        }
        let frame_cap = HEADER_LEN.saturating_add(max_len);
        let free = self.space.len().saturating_sub(self.used);
        let direct = frame_cap <= free;
        let buf = if direct {
            let end = self.used.saturating_add(frame_cap);
            self.space.get_mut(self.used..end)
        } else {
            self.out.staging.as_mut().get_mut(..frame_cap)
        };
        let Some(buf) = buf else {
            return Err(Busy);
        };
        let (head, body) = buf.split_at_mut(HEADER_LEN);
        let len = match fill(body) {
            Ok(len) => len.min(max_len),
            Err(e) => return Ok(Err(e)),
        };
        let Ok(header) = HEADER.header(len) else {
            return Err(Busy);
        };
        head.copy_from_slice(header.as_bytes());
        let total = HEADER_LEN.saturating_add(len);
        let stats = &mut self.out.stats;
        stats.frames = stats.frames.saturating_add(1);
        stats.body_bytes = stats.body_bytes.saturating_add(to_u64(len));
        stats.bytes = stats.bytes.saturating_add(to_u64(total));
        if direct {
            self.used = self.used.saturating_add(total);
        } else {
            self.out.start = 0;
            self.out.end = total;
            let rest = self.space.get_mut(self.used..).unwrap_or_default();
            self.used = self.used.saturating_add(self.out.drain_into(rest));
        }
        Ok(Ok(len))
    }

    /// Makes one frame carrying `message`.
    pub(crate) fn send(
        &mut self,
        message: &crate::wire::transfer::Message<'_>,
    ) -> Result<(), Busy> {
        let len = message.buffer_len();
        match self.send_with(len, |body| message.emit(body)) {
            Ok(Ok(_)) => Ok(()),
            // The slice given is exactly the message's length; never taken.
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::transfer::Message;

    #[test]
    fn receive_storage_decides_the_announced_limit() {
        assert_eq!(max_body_for(131), None);
        assert_eq!(max_body_for(132), Some(128));
        assert_eq!(max_body_for(65_540), Some(65_536));
        assert_eq!(
            framing(vec![0; 131], &vec![0; 128]).err(),
            Some(SetupError::ReceiveStorageTooSmall { len: 131 })
        );
        assert_eq!(
            framing(vec![0; 132], &vec![0; 127]).err(),
            Some(SetupError::StagingTooSmall { len: 127 })
        );
        assert_eq!(framing(vec![0; 1028], &vec![0; 128]).unwrap().1, 1024);
    }

    #[test]
    fn a_frame_goes_straight_into_space_that_holds_it_else_waits_whole_in_staging() {
        let mut out = Outgoing::new([0u8; 128]);
        let list = Message::List;
        let mut space = [0u8; 7];
        let mut sender = Sender::new(&mut out, &mut space);
        sender.send(&list).unwrap();
        sender.send(&list).unwrap();
        // 5 + 5 bytes: the second frame went to staging, 2 of its bytes out.
        assert_eq!(sender.used(), 7);
        assert!(!sender.ready());
        assert_eq!(sender.send(&list), Err(Busy));
        assert_eq!(space, [0, 0, 0, 1, 4, 0, 0]);
        let mut rest = [0u8; 16];
        let sender = Sender::new(&mut out, &mut rest);
        assert_eq!(sender.used(), 3);
        assert!(sender.ready());
        assert_eq!(&rest[..3], &[0, 1, 4]);
        let stats = out.stats();
        assert_eq!((stats.frames, stats.bytes, stats.split_frames), (2, 10, 1));
    }

    #[test]
    fn a_fill_that_fails_sends_nothing() {
        let mut out = Outgoing::new([0u8; 128]);
        let mut space = [0u8; 64];
        let mut sender = Sender::new(&mut out, &mut space);
        assert_eq!(sender.send_with(10, |_| Err("no")), Ok(Err("no")));
        assert_eq!(sender.send_with(200, |_| Ok::<_, ()>(0)), Err(Busy));
        assert_eq!(sender.used(), 0);
        assert!(sender.ready());
        assert_eq!(
            sender.send_with(10, |body| Ok::<_, ()>(body.len() - 7)),
            Ok(Ok(3))
        );
        assert_eq!(sender.used(), 7);
    }
}
