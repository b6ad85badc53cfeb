//! A file store in one fixed byte arena: `no_std`, no heap, for firmware and tests.
//!
//! # Layout and cost
//!
//! `RamStore<FILES, BYTES>` is a `[u8; BYTES]` arena, `FILES` slots, one `usize` and
//! a counter of commits and upload begins. Each slot describes one entry (a committed file or a partial
//! upload): its [`FileName`] inline, where its region starts, how many bytes it
//! holds and how many it reserves, and a committed file's CRC-32 and version. Regions are packed from the start of the arena with no gaps;
//! the free space is all at the end.
//!
//! ```text
//! arena: | a.txt (committed) | log (partial: len, then reserved) | b.bin | free ... |
//!        0                                                       used          BYTES
//! ```
//!
//! - A partial upload reserves its whole announced size when it begins, so once
//!   PUT_READY is sent, only a broken client can make an upload fail for space.
//! - Deleting (or shrinking a partial, resumed or started over) moves the
//!   entries behind it down to close the gap: `O(BYTES)` memory moves, no
//!   fragmentation, ever.
//! - `size_of::<RamStore<FILES, BYTES>>()` is `BYTES + FILES * slot + usize + 4`,
//!   rounded up to the alignment of `usize`. A slot is 88 bytes on a 32-bit
//!   microcontroller (104 on a 64-bit host): a 64 KiB store for 8 files costs
//!   65 536 + 704 + 8 bytes. A test pins this.
//! - A file's [version](Storage::version) is the value of a store-wide counter at
//!   its commit: 4 bytes a slot, no table. The counter also stamps each upload
//!   begun ([`Upload::stamp`]), which the partial keeps in the same 4 bytes. It
//!   is a `u32` and wraps, so a reader holding a version could mistake a file
//!   for the one it began with only if exactly a multiple of 2^32 commits and
//!   begins happened in between.
//!
//! Limits: at most `FILES` entries (partials included), `BYTES` bytes in all
//! (reservations included), and a file may be as large as the whole arena.
//!
//! [`RamStore::new`] is a `const fn`, so a store can be a `static` (on a host, in
//! a `Mutex`), which keeps a large arena off the stack.

use super::{Entry, FileName, FileStat, Storage, StoreError, Upload};
use crate::wire::crc32::crc32;

/// Whether an entry is a committed file or a partial upload.
///
/// Its values start at 1 so that an empty slot (`None`) is all zero bytes, as
/// is the rest of an empty store: a `RamStore::new()` static can then live in
/// zeroed memory. The QEMU firmware relies on this for its 3 MiB store (its
/// linker section is `NOBITS`, so the compiler refuses a non-zero initial value).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum SlotState {
    Partial = 1,
    Committed = 2,
}

/// One entry of the arena: a committed file or a partial upload.
#[derive(Clone, Copy)]
struct Slot {
    name: FileName,
    state: SlotState,
    /// First byte of the region in the arena.
    start: usize,
    /// Bytes stored.
    len: usize,
    /// Bytes reserved: the region is `start..start + cap`. Equals `len` once
    /// committed.
    cap: usize,
    /// CRC-32 of the bytes stored, kept as they were appended: a partial's
    /// so far, a committed file's whole.
    crc: u32,
    /// A committed file's version: the store's stamp at its commit. A
    /// partial's: the stamp of its latest begin, which its [`Upload`] carries.
    version: u32,
}

impl Slot {
    fn is_committed(&self) -> bool {
        self.state == SlotState::Committed
    }

    /// Whether `upload` was made for this partial as it is now: its latest
    /// begin's stamp, its announced size (the reservation) and the CRC-32 of
    /// what it holds.
    fn is_for(&self, upload: &Upload) -> bool {
        self.version == upload.stamp()
            && to_u64(self.cap) == upload.size()
            && self.crc == upload.crc()
    }
}

// The cost the module documentation promises for a 32-bit microcontroller.
#[cfg(target_pointer_width = "32")]
const _: () = assert!(core::mem::size_of::<Option<Slot>>() == 88);

/// A store of at most `FILES` files in `BYTES` bytes of RAM. See the module
/// documentation for its layout and memory cost.
///
/// ```
/// use smolsock::store::{FileName, RamStore, Storage};
/// use smolsock::wire::crc32::crc32;
///
/// let mut store = RamStore::<4, 1024>::new();
/// let name = FileName::new("hello.txt").unwrap();
/// let mut upload = store.begin_upload(&name, 13, false).unwrap();
/// store.append(&mut upload, b"hello, world\n").unwrap();
/// store.commit(&upload, crc32(b"hello, world\n")).unwrap();
/// assert_eq!(store.stat(&name).unwrap().size, 13);
/// ```
pub struct RamStore<const FILES: usize, const BYTES: usize> {
    slots: [Option<Slot>; FILES],
    /// Bytes of the arena taken by regions (all before this index).
    used: usize,
    /// The last stamp handed out (wrapping), to a commit as its file's version
    /// or to an upload's begin.
    stamps: u32,
    arena: [u8; BYTES],
}

/// Sizes and counts go out as `u64`; a `usize` always fits.
fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl<const FILES: usize, const BYTES: usize> RamStore<FILES, BYTES> {
    /// The next stamp: a commit's version, or an upload's begin's mark.
    fn next_stamp(&mut self) -> u32 {
        self.stamps = self.stamps.wrapping_add(1);
        self.stamps
    }

    /// The committed file (`committed`) or partial whose name comes next after
    /// `after` in byte order.
    fn next_slot(&self, after: Option<&FileName>, committed: bool) -> Option<&Slot> {
        self.slots
            .iter()
            .flatten()
            .filter(|slot| {
                slot.is_committed() == committed && after.is_none_or(|after| slot.name > *after)
            })
            .min_by(|a, b| a.name.cmp(&b.name))
    }

    /// An empty store.
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; FILES],
            used: 0,
            stamps: 0,
            arena: [0; BYTES],
        }
    }

    /// Total bytes the store can hold (`BYTES`).
    pub const fn capacity(&self) -> usize {
        BYTES
    }

    /// The most entries it holds at once, partials included (`FILES`).
    pub const fn max_files(&self) -> usize {
        FILES
    }

    /// Bytes taken by files and by the reservations of partial uploads.
    pub const fn used_bytes(&self) -> usize {
        self.used
    }

    /// Bytes still free.
    pub const fn free_bytes(&self) -> usize {
        BYTES.saturating_sub(self.used)
    }

    /// Entries held: committed files and partial uploads.
    pub fn entries(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    fn full(&self) -> StoreError {
        StoreError::Full {
            free: to_u64(self.free_bytes()),
        }
    }

    fn find(&self, name: &FileName, committed: bool) -> Option<usize> {
        self.slots.iter().position(|slot| {
            slot.as_ref()
                .is_some_and(|slot| slot.is_committed() == committed && slot.name == *name)
        })
    }

    fn slot(&self, index: usize) -> Result<Slot, StoreError> {
        self.slots
            .get(index)
            .copied()
            .flatten()
            .ok_or(StoreError::Inconsistent)
    }

    fn slot_mut(&mut self, index: usize) -> Result<&mut Slot, StoreError> {
        self.slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .ok_or(StoreError::Inconsistent)
    }

    /// The bytes an entry holds.
    fn contents(&self, slot: &Slot) -> Result<&[u8], StoreError> {
        let end = slot
            .start
            .checked_add(slot.len)
            .ok_or(StoreError::Inconsistent)?;
        self.arena
            .get(slot.start..end)
            .ok_or(StoreError::Inconsistent)
    }

    fn committed(&self, name: &FileName) -> Result<Slot, StoreError> {
        let index = self.find(name, true).ok_or(StoreError::NotFound)?;
        self.slot(index)
    }

    /// Changes an entry's reservation to `new_cap`, moving every region behind it
    /// so the arena stays packed. Fails with `Full`, changing nothing, when the
    /// arena cannot take the growth.
    fn resize(&mut self, index: usize, new_cap: usize) -> Result<(), StoreError> {
        let slot = self.slot(index)?;
        let old_end = slot
            .start
            .checked_add(slot.cap)
            .ok_or(StoreError::Inconsistent)?;
        let new_end = slot
            .start
            .checked_add(new_cap)
            .ok_or(StoreError::Inconsistent)?;
        if old_end > self.used {
            return Err(StoreError::Inconsistent);
        }
        // The tail `old_end..used` slides to start at `new_end`. A rotation of the
        // window that spans both positions moves it without a second buffer, and
        // it cannot panic: each window is at least as long as the shift.
        if let Some(grow) = new_cap.checked_sub(slot.cap) {
            if grow > self.free_bytes() {
                return Err(self.full());
            }
            let window_end = self
                .used
                .checked_add(grow)
                .ok_or(StoreError::Inconsistent)?;
            self.arena
                .get_mut(old_end..window_end)
                .ok_or(StoreError::Inconsistent)?
                .rotate_right(grow);
        } else {
            let shrink = slot.cap.saturating_sub(new_cap);
            self.arena
                .get_mut(new_end..self.used)
                .ok_or(StoreError::Inconsistent)?
                .rotate_left(shrink);
        }
        for (i, other) in self.slots.iter_mut().enumerate() {
            if let Some(other) = other.as_mut().filter(|_| i != index)
                && other.start >= old_end
            {
                other.start = other
                    .start
                    .checked_sub(old_end)
                    .and_then(|offset| offset.checked_add(new_end))
                    .ok_or(StoreError::Inconsistent)?;
            }
        }
        self.used = self
            .used
            .checked_sub(old_end)
            .and_then(|tail| tail.checked_add(new_end))
            .ok_or(StoreError::Inconsistent)?;
        let slot = self.slot_mut(index)?;
        slot.cap = new_cap;
        slot.len = slot.len.min(new_cap);
        Ok(())
    }

    /// Deletes an entry and closes the gap it leaves.
    fn remove(&mut self, index: usize) -> Result<(), StoreError> {
        self.resize(index, 0)?;
        let slot = self.slots.get_mut(index).ok_or(StoreError::Inconsistent)?;
        *slot = None;
        Ok(())
    }
}

impl<const FILES: usize, const BYTES: usize> Default for RamStore<FILES, BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const FILES: usize, const BYTES: usize> Storage for RamStore<FILES, BYTES> {
    fn stat(&self, name: &FileName) -> Result<FileStat, StoreError> {
        let slot = self.committed(name)?;
        Ok(FileStat {
            size: to_u64(slot.len),
            crc: slot.crc,
        })
    }

    fn read(&self, name: &FileName, offset: u64, buf: &mut [u8]) -> Result<usize, StoreError> {
        let slot = self.committed(name)?;
        let contents = self.contents(&slot)?;
        let past_end = StoreError::BadOffset {
            expected: to_u64(contents.len()),
        };
        let offset = usize::try_from(offset).map_err(|_| past_end)?;
        let rest = contents.get(offset..).ok_or(past_end)?;
        let n = rest.len().min(buf.len());
        buf.get_mut(..n)
            .zip(rest.get(..n))
            .ok_or(StoreError::Inconsistent)
            .map(|(dst, src)| dst.copy_from_slice(src))?;
        Ok(n)
    }

    fn crc_prefix(&self, name: &FileName, len: u64) -> Result<u32, StoreError> {
        let slot = self.committed(name)?;
        let contents = self.contents(&slot)?;
        let past_end = StoreError::BadOffset {
            expected: to_u64(contents.len()),
        };
        let len = usize::try_from(len).map_err(|_| past_end)?;
        Ok(crc32(contents.get(..len).ok_or(past_end)?))
    }

    fn next_entry(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        Ok(self.next_slot(after, true).map(|slot| Entry {
            name: slot.name,
            size: to_u64(slot.len),
        }))
    }

    fn version(&self, name: &FileName) -> Result<u64, StoreError> {
        self.committed(name).map(|slot| u64::from(slot.version))
    }

    fn delete(&mut self, name: &FileName) -> Result<(), StoreError> {
        let committed = self.find(name, true);
        let partial = self.find(name, false);
        if committed.is_none() && partial.is_none() {
            return Err(StoreError::NotFound);
        }
        // Slot indices stay valid across a removal; only region starts move.
        for index in [committed, partial].into_iter().flatten() {
            self.remove(index)?;
        }
        Ok(())
    }

    fn begin_upload(
        &mut self,
        name: &FileName,
        size: u64,
        resume: bool,
    ) -> Result<Upload, StoreError> {
        let too_large = StoreError::FileTooLarge { max: to_u64(BYTES) };
        let cap = usize::try_from(size)
            .ok()
            .filter(|&cap| cap <= BYTES)
            .ok_or(too_large)?;
        if let Some(index) = self.find(name, false) {
            let kept = resume && self.slot(index)?.len <= cap;
            // The partial's slot and region become the new reservation, so its
            // own room counts. `resize` refuses a growth that does not fit before
            // it changes anything: a refused begin keeps the partial as it was.
            self.resize(index, cap)?;
            let stamp = self.next_stamp();
            let partial = self.slot_mut(index)?;
            if !kept {
                partial.len = 0;
                partial.crc = 0;
            }
            // Only this begin's `Upload` writes to the partial from now on.
            partial.version = stamp;
            // A kept partial's CRC-32 was recorded as its bytes came in.
            let upload = Upload::new(*name, size, to_u64(partial.len), partial.crc);
            return Ok(upload.stamped(stamp));
        }
        // The bytes first (`Storage::begin_upload`): `TooManyFiles` says the
        // bytes would fit.
        if cap > self.free_bytes() {
            return Err(self.full());
        }
        let index = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(StoreError::TooManyFiles { max: to_u64(FILES) })?;
        let start = self.used;
        self.used = start.checked_add(cap).ok_or(StoreError::Inconsistent)?;
        let stamp = self.next_stamp();
        let slot = self.slots.get_mut(index).ok_or(StoreError::Inconsistent)?;
        *slot = Some(Slot {
            name: *name,
            state: SlotState::Partial,
            start,
            len: 0,
            cap,
            crc: 0,
            version: stamp,
        });
        Ok(Upload::new(*name, size, 0, 0).stamped(stamp))
    }

    fn append(&mut self, upload: &mut Upload, data: &[u8]) -> Result<(), StoreError> {
        let index = self
            .find(upload.name(), false)
            .ok_or(StoreError::NotFound)?;
        let partial = self.slot(index)?;
        if to_u64(partial.len) != upload.written() {
            return Err(StoreError::BadOffset {
                expected: to_u64(partial.len),
            });
        }
        // The same length, another size or other bytes: a partial started
        // over since (or a forged upload).
        if !partial.is_for(upload) {
            return Err(StoreError::NotFound);
        }
        let too_much = StoreError::TooMuchData {
            size: upload.size(),
        };
        let end = upload
            .written()
            .checked_add(to_u64(data.len()))
            .ok_or(too_much)?;
        let new_len = partial.len.saturating_add(data.len());
        if end > upload.size() || new_len > partial.cap {
            return Err(too_much);
        }
        let from = partial
            .start
            .checked_add(partial.len)
            .ok_or(StoreError::Inconsistent)?;
        let to = partial
            .start
            .checked_add(new_len)
            .ok_or(StoreError::Inconsistent)?;
        self.arena
            .get_mut(from..to)
            .ok_or(StoreError::Inconsistent)?
            .copy_from_slice(data);
        upload.record(data);
        let slot = self.slot_mut(index)?;
        slot.len = new_len;
        slot.crc = upload.crc();
        Ok(())
    }

    fn commit(&mut self, upload: &Upload, crc: u32) -> Result<FileStat, StoreError> {
        let index = self
            .find(upload.name(), false)
            .ok_or(StoreError::NotFound)?;
        let partial = self.slot(index)?;
        let held = to_u64(partial.len);
        if !partial.is_for(upload) {
            return Err(StoreError::NotFound);
        }
        if partial.len != partial.cap || held != upload.size() || upload.written() != held {
            return Err(StoreError::Incomplete {
                written: held,
                size: upload.size(),
            });
        }
        // Kept as the bytes were appended: no second pass over them.
        let computed = partial.crc;
        if computed != crc {
            self.remove(index)?;
            return Err(StoreError::ChecksumMismatch { computed });
        }
        if let Some(older) = self.find(upload.name(), true) {
            self.remove(older)?;
        }
        let version = self.next_stamp();
        let slot = self.slot_mut(index)?;
        slot.state = SlotState::Committed;
        slot.crc = computed;
        slot.version = version;
        Ok(FileStat {
            size: held,
            crc: computed,
        })
    }

    fn discard_upload(&mut self, name: &FileName) -> Result<(), StoreError> {
        match self.find(name, false) {
            Some(index) => self.remove(index),
            None => Ok(()),
        }
    }

    /// A partial takes its whole announced size: its reservation.
    fn next_partial(&self, after: Option<&FileName>) -> Result<Option<Entry>, StoreError> {
        Ok(self.next_slot(after, false).map(|slot| Entry {
            name: slot.name,
            size: to_u64(slot.cap),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{self, get, pattern, put};
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn ram_store_keeps_the_storage_contract() {
        conformance::run_all(RamStore::<8, 2048>::new, RamStore::<4, 100>::new);
    }

    #[test]
    fn filling_to_full_is_a_full_error_with_the_free_bytes() {
        let mut store = RamStore::<4, 100>::new();
        put(&mut store, "a", &pattern(60, 1), 9);
        assert_eq!(
            store.begin_upload(&name("b"), 41, false),
            Err(StoreError::Full { free: 40 })
        );
        put(&mut store, "b", &pattern(40, 2), 9);
        assert_eq!(store.free_bytes(), 0);
        assert_eq!(
            store.begin_upload(&name("c"), 1, false),
            Err(StoreError::Full { free: 0 })
        );
        assert_eq!(
            store.begin_upload(&name("c"), 0, false).map(|u| u.size()),
            Ok(0),
            "an empty file needs no bytes"
        );
        assert_eq!(get(&store, "a"), pattern(60, 1));
    }

    #[test]
    fn a_partial_reserves_its_announced_size() {
        let mut store = RamStore::<4, 100>::new();
        let mut upload = store.begin_upload(&name("p"), 80, false).unwrap();
        store.append(&mut upload, b"12345").unwrap();
        assert_eq!(store.used_bytes(), 80);
        assert_eq!(
            store.begin_upload(&name("q"), 21, false),
            Err(StoreError::Full { free: 20 })
        );
        // So the upload that began can always finish.
        store.append(&mut upload, &pattern(75, 3)).unwrap();
        assert!(upload.is_complete());
    }

    #[test]
    fn too_many_files_counts_partials() {
        let mut store = RamStore::<2, 100>::new();
        put(&mut store, "a", b"1", 1);
        let _partial = store.begin_upload(&name("b"), 5, false).unwrap();
        assert_eq!(
            store.begin_upload(&name("c"), 1, false),
            Err(StoreError::TooManyFiles { max: 2 })
        );
        // Replacing "a" needs a slot for its partial too.
        assert_eq!(
            store.begin_upload(&name("a"), 1, false),
            Err(StoreError::TooManyFiles { max: 2 })
        );
        store.delete(&name("b")).unwrap();
        put(&mut store, "a", b"2", 1);
        assert_eq!(store.entries(), 1);
        assert_eq!(get(&store, "a"), b"2");
    }

    #[test]
    fn a_file_larger_than_the_arena_is_refused() {
        let mut store = RamStore::<2, 100>::new();
        assert_eq!(
            store.begin_upload(&name("big"), 101, false),
            Err(StoreError::FileTooLarge { max: 100 })
        );
        assert_eq!(
            store.begin_upload(&name("big"), u64::MAX, true),
            Err(StoreError::FileTooLarge { max: 100 })
        );
        assert_eq!(store.entries(), 0);
        put(&mut store, "big", &pattern(100, 4), 33);
    }

    #[test]
    fn delete_closes_the_gap_and_keeps_other_files_intact() {
        let mut store = RamStore::<4, 100>::new();
        put(&mut store, "a", &pattern(30, 1), 7);
        put(&mut store, "b", &pattern(30, 2), 7);
        put(&mut store, "c", &pattern(30, 3), 7);
        store.delete(&name("a")).unwrap();
        assert_eq!(store.used_bytes(), 60);
        assert_eq!(get(&store, "b"), pattern(30, 2));
        assert_eq!(get(&store, "c"), pattern(30, 3));
        put(&mut store, "d", &pattern(40, 4), 7);
        assert_eq!(get(&store, "c"), pattern(30, 3));
        assert_eq!(store.stat(&name("c")).unwrap().crc, crc32(&pattern(30, 3)));
    }

    #[test]
    fn resuming_with_a_larger_size_moves_later_entries_intact() {
        let mut store = RamStore::<4, 100>::new();
        let mut partial = store.begin_upload(&name("p"), 10, false).unwrap();
        store.append(&mut partial, &pattern(5, 9)).unwrap();
        put(&mut store, "q", &pattern(20, 8), 6);
        // The same name, announced larger: the client's file grew.
        let mut resumed = store.begin_upload(&name("p"), 30, true).unwrap();
        assert_eq!(resumed.resumed_from(), 5);
        assert_eq!(get(&store, "q"), pattern(20, 8));
        assert_eq!(store.used_bytes(), 50);
        let mut whole = pattern(5, 9);
        whole.extend_from_slice(&pattern(25, 7));
        store.append(&mut resumed, &whole[5..]).unwrap();
        store.commit(&resumed, crc32(&whole)).unwrap();
        assert_eq!(get(&store, "p"), whole);
        assert_eq!(get(&store, "q"), pattern(20, 8));
    }

    #[test]
    fn a_resume_that_does_not_fit_keeps_the_partial() {
        let mut store = RamStore::<4, 50>::new();
        let mut partial = store.begin_upload(&name("p"), 10, false).unwrap();
        store.append(&mut partial, b"12345").unwrap();
        put(&mut store, "q", &pattern(30, 1), 30);
        assert_eq!(
            store.begin_upload(&name("p"), 21, true),
            Err(StoreError::Full { free: 10 })
        );
        let exact = store.begin_upload(&name("p"), 20, true).unwrap();
        assert_eq!((exact.resumed_from(), store.free_bytes()), (5, 0));
        assert_eq!(get(&store, "q"), pattern(30, 1));
        // Announced smaller again: the reservation shrinks back.
        let resumed = store.begin_upload(&name("p"), 10, true).unwrap();
        assert_eq!(resumed.resumed_from(), 5);
        assert_eq!(resumed.resumed_crc(), crc32(b"12345"));
        assert_eq!(store.free_bytes(), 10);
        assert_eq!(get(&store, "q"), pattern(30, 1));
    }

    #[test]
    fn a_refused_begin_leaves_the_arena_as_it_was() {
        let mut store = RamStore::<4, 100>::new();
        put(&mut store, "a", &pattern(50, 1), 50);
        let mut partial = store.begin_upload(&name("p"), 30, false).unwrap();
        store.append(&mut partial, b"12345").unwrap();
        put(&mut store, "b", &pattern(10, 2), 10);
        let before = (store.used_bytes(), store.entries(), store.free_bytes());
        assert_eq!(before, (90, 3, 10));
        // 41 bytes in place of the partial's 30: one more than the store has.
        for resume in [false, true] {
            assert_eq!(
                store.begin_upload(&name("p"), 41, resume),
                Err(StoreError::Full { free: 10 })
            );
            let after = (store.used_bytes(), store.entries(), store.free_bytes());
            assert_eq!(after, before);
        }
        assert_eq!(get(&store, "a"), pattern(50, 1));
        assert_eq!(get(&store, "b"), pattern(10, 2));
        store.append(&mut partial, b"67890").unwrap();
        let started_over = store.begin_upload(&name("p"), 40, false).unwrap();
        assert_eq!(started_over.resumed_from(), 0);
        assert_eq!(store.free_bytes(), 0);
        assert_eq!(get(&store, "b"), pattern(10, 2));
    }

    #[test]
    fn memory_cost_is_the_arena_plus_a_slot_per_file() {
        let slot = core::mem::size_of::<Option<Slot>>();
        assert!(slot <= 104, "slot grew to {slot} bytes");
        assert_eq!(
            core::mem::size_of::<Option<Slot>>(),
            core::mem::size_of::<Slot>()
        );
        let store = core::mem::size_of::<RamStore<8, 4096>>();
        assert!(store <= 4096 + 8 * slot + 2 * core::mem::size_of::<usize>() + 4);
        assert!(store >= 4096 + 8 * slot);
    }

    #[test]
    fn versions_come_from_a_wrapping_counter() {
        let mut store = RamStore::<2, 64>::new();
        // Each upload takes two stamps: its begin's and its commit's.
        store.stamps = u32::MAX - 2;
        put(&mut store, "a", b"1", 1);
        assert_eq!(store.version(&name("a")), Ok(u64::from(u32::MAX)));
        put(&mut store, "b", b"2", 1);
        assert_eq!(store.version(&name("b")), Ok(1));
        assert_eq!(store.version(&name("a")), Ok(u64::from(u32::MAX)));
    }

    #[test]
    fn a_store_can_be_a_static() {
        static STORE: std::sync::Mutex<RamStore<2, 64>> = std::sync::Mutex::new(RamStore::new());
        let mut store = STORE.lock().unwrap();
        put(&mut *store, "s", b"static", 2);
        assert_eq!(store.stat(&name("s")).unwrap().size, 6);
    }

    #[test]
    fn a_name_that_escapes_cannot_be_made() {
        for bad in ["../x", "..", "a/b", "/abs", "x\\y", "nul\0"] {
            assert!(FileName::new(bad).is_err(), "{bad:?}");
        }
    }

    /// What the model of the store does; names are indices into `NAMES`.
    #[derive(Clone, Debug)]
    enum Op {
        Put {
            file: usize,
            len: usize,
            seed: u8,
        },
        Abandon {
            file: usize,
            size: usize,
            written: usize,
            seed: u8,
        },
        Resume {
            file: usize,
        },
        Delete {
            file: usize,
        },
    }

    const NAMES: [&str; 4] = ["w", "x", "y", "z"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..4usize, 0..40usize, any::<u8>()).prop_map(|(file, len, seed)| Op::Put {
                file,
                len,
                seed
            }),
            (0..4usize, 0..40usize, 0..40usize, any::<u8>()).prop_map(
                |(file, size, written, seed)| Op::Abandon {
                    file,
                    size,
                    written: written.min(size),
                    seed
                }
            ),
            (0..4usize).prop_map(|file| Op::Resume { file }),
            (0..4usize).prop_map(|file| Op::Delete { file }),
        ]
    }

    proptest! {
        /// Any sequence of uploads, abandoned uploads, resumes and deletes keeps
        /// every committed file byte for byte and the arena packed.
        #[test]
        fn arena_matches_a_model_under_any_operations(ops in proptest::collection::vec(op(), 1..40)) {
            let mut store = RamStore::<5, 120>::new();
            let mut files: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
            // name -> (announced size, seed, bytes written)
            let mut partials: BTreeMap<usize, (usize, u8, usize)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put { file, len, seed } => {
                        let bytes = pattern(len, seed);
                        match store.begin_upload(&name(NAMES[file]), len as u64, false) {
                            Ok(mut upload) => {
                                partials.remove(&file);
                                store.append(&mut upload, &bytes).unwrap();
                                store.commit(&upload, crc32(&bytes)).unwrap();
                                files.insert(file, bytes);
                            }
                            // A refused begin keeps the partial as it was.
                            Err(StoreError::Full { .. } | StoreError::TooManyFiles { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    Op::Abandon { file, size, written, seed } => {
                        match store.begin_upload(&name(NAMES[file]), size as u64, false) {
                            Ok(mut upload) => {
                                store.append(&mut upload, &pattern(size, seed)[..written]).unwrap();
                                partials.insert(file, (size, seed, written));
                            }
                            Err(StoreError::Full { .. } | StoreError::TooManyFiles { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    Op::Resume { file } => {
                        let Some(&(size, seed, written)) = partials.get(&file) else { continue };
                        let mut upload = store.begin_upload(&name(NAMES[file]), size as u64, true).unwrap();
                        prop_assert_eq!(upload.resumed_from(), written as u64);
                        let bytes = pattern(size, seed);
                        prop_assert_eq!(upload.resumed_crc(), crc32(&bytes[..written]));
                        store.append(&mut upload, &bytes[written..]).unwrap();
                        store.commit(&upload, crc32(&bytes)).unwrap();
                        partials.remove(&file);
                        files.insert(file, bytes);
                    }
                    Op::Delete { file } => {
                        let existed = files.remove(&file).is_some() | partials.remove(&file).is_some();
                        let result = store.delete(&name(NAMES[file]));
                        prop_assert_eq!(result.is_ok(), existed);
                    }
                }
                for (file, bytes) in &files {
                    prop_assert_eq!(&get(&store, NAMES[*file]), bytes);
                }
                let reserved: usize = files.values().map(Vec::len).sum::<usize>()
                    + partials.values().map(|p| p.0).sum::<usize>();
                prop_assert_eq!(store.used_bytes(), reserved);
                prop_assert_eq!(store.entries(), files.len() + partials.len());
            }
        }
    }
}
