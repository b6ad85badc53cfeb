//! The fixed queue of bytes a session has made and not yet handed out.

use core::fmt;

/// Outgoing bytes over storage of fixed size: an array (`[u8; N]`) or a caller's
/// slice. Bytes go in whole ([`push`](Self::push), [`append_with`](Self::append_with))
/// or not at all, and come out in order ([`drain_into`](Self::drain_into)).
///
/// ```
/// use smolsock::session::OutBuffer;
///
/// let mut out = OutBuffer::new([0u8; 8]);
/// out.push(b"hello").unwrap();
/// assert!(out.push(b"world").is_err()); // 5 more do not fit in the 3 left: nothing taken
/// let mut space = [0u8; 3];
/// assert_eq!(out.drain_into(&mut space), 3);
/// assert_eq!(&space, b"hel");
/// out.push(b"world").unwrap(); // the 2 bytes left move to the front
/// let mut rest = [0u8; 16];
/// let n = out.drain_into(&mut rest);
/// assert_eq!(&rest[..n], b"loworld");
/// ```
#[derive(Clone)]
pub struct OutBuffer<T> {
    storage: T,
    start: usize,
    end: usize,
}

/// An [`OutBuffer`] seen through a plain slice, so that code handed one need not
/// be generic over its storage type.
pub(crate) struct OutRef<'a> {
    storage: &'a mut [u8],
    start: &'a mut usize,
    end: &'a mut usize,
}

/// The bytes do not fit in an [`OutBuffer`] now; nothing was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Full {
    /// Bytes asked for.
    pub needed: usize,
    /// Bytes free.
    pub free: usize,
}

impl fmt::Display for Full {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes do not fit in {} free", self.needed, self.free)
    }
}

impl core::error::Error for Full {}

impl<T> OutBuffer<T> {
    /// An empty queue over `storage`.
    pub const fn new(storage: T) -> Self {
        Self {
            storage,
            start: 0,
            end: 0,
        }
    }

    /// Bytes waiting to be handed out.
    pub const fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// Whether nothing is waiting.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Forgets every byte waiting.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> OutBuffer<T> {
    /// The most bytes the queue holds.
    pub fn capacity(&self) -> usize {
        self.storage.as_ref().len()
    }

    /// Bytes that can be pushed now.
    pub fn free(&self) -> usize {
        self.capacity().saturating_sub(self.len())
    }

    /// Queues all of `bytes`, or nothing if they do not fit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.as_out_ref().push(bytes)
    }

    /// Queues `len` bytes that `fill` writes in place (it gets exactly `len` bytes),
    /// or nothing if they do not fit.
    pub fn append_with<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), Full> {
        self.as_out_ref().append_with(len, fill)
    }

    /// The bytes waiting, in order.
    pub fn as_slice(&self) -> &[u8] {
        self.storage
            .as_ref()
            .get(self.start..self.end)
            .unwrap_or_default()
    }

    /// Copies as many waiting bytes as fit into `space`, removes them from the
    /// queue, and returns how many.
    pub fn drain_into(&mut self, space: &mut [u8]) -> usize {
        let waiting = self.as_slice();
        let n = waiting.len().min(space.len());
        if let (Some(dst), Some(src)) = (space.get_mut(..n), waiting.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.consume(n);
        n
    }

    /// Removes the first `n` waiting bytes (all of them if fewer wait).
    pub fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    pub(crate) fn as_out_ref(&mut self) -> OutRef<'_> {
        OutRef {
            storage: self.storage.as_mut(),
            start: &mut self.start,
            end: &mut self.end,
        }
    }
}

impl OutRef<'_> {
    pub(crate) fn is_empty(&self) -> bool {
        *self.end <= *self.start
    }

    pub(crate) fn free(&self) -> usize {
        self.storage
            .len()
            .saturating_sub(self.end.saturating_sub(*self.start))
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), Full> {
        self.append_with(bytes.len(), |space| space.copy_from_slice(bytes))
    }

    pub(crate) fn append_with<F: FnOnce(&mut [u8])>(
        &mut self,
        len: usize,
        fill: F,
    ) -> Result<(), Full> {
        let free = self.free();
        if len > free {
            return Err(Full { needed: len, free });
        }
        if self.storage.len().saturating_sub(*self.end) < len {
            self.compact();
        }
        let end = self.end.saturating_add(len);
        let Some(space) = self.storage.get_mut(*self.end..end) else {
            return Err(Full { needed: len, free });
        };
        fill(space);
        *self.end = end;
        Ok(())
    }

    /// Moves the waiting bytes to the front of the storage.
    fn compact(&mut self) {
        if *self.start == 0 {
            return;
        }
        let (start, end) = (*self.start, *self.end);
        self.storage.copy_within(start..end, 0);
        *self.end = end.saturating_sub(start);
        *self.start = 0;
    }
}

impl<T> fmt::Debug for OutBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutBuffer")
            .field("waiting", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_that_does_not_fit_takes_nothing() {
        let mut out = OutBuffer::new([0u8; 4]);
        out.push(b"abc").unwrap();
        assert_eq!(out.push(b"de"), Err(Full { needed: 2, free: 1 }));
        assert_eq!(out.as_slice(), b"abc");
    }

    #[test]
    fn draining_and_pushing_keep_the_order_across_compaction() {
        let mut out = OutBuffer::new([0u8; 6]);
        let mut got = Vec::new();
        let mut next = 0u8;
        for round in 0..50 {
            let want = round % 4 + 1;
            let bytes: Vec<u8> = (0..want).map(|i| next.wrapping_add(i as u8)).collect();
            if out.push(&bytes).is_ok() {
                next = next.wrapping_add(want as u8);
            }
            let mut space = [0u8; 3];
            let n = out.drain_into(&mut space[..round % 3 + 1]);
            got.extend_from_slice(&space[..n]);
        }
        let mut rest = [0u8; 6];
        let n = out.drain_into(&mut rest);
        got.extend_from_slice(&rest[..n]);
        let expected: Vec<u8> = (0..got.len()).map(|i| i as u8).collect();
        assert_eq!(got, expected);
        assert!(out.is_empty());
    }

    #[test]
    fn empty_storage_takes_only_nothing() {
        let mut out = OutBuffer::new([0u8; 0]);
        assert_eq!(out.push(b""), Ok(()));
        assert!(out.push(b"x").is_err());
        assert_eq!(out.drain_into(&mut [0u8; 4]), 0);
    }
}
