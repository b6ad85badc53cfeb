//! The CRC-32 that checks every transferred file end to end.
//!
//! This is the CRC-32 of zlib, PNG and Ethernet (CRC-32/ISO-HDLC, Python's
//! `zlib.crc32`): polynomial 0x04C11DB7 processed bit-reflected (0xEDB88320),
//! initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF, check value 0xCBF43926 for
//! `"123456789"`. `PROTOCOL.md` names it, so any language's zlib binding can
//! talk to smolsock.
//!
//! It is computed a byte at a time from a 256-entry table built at compile time:
//! 1 KiB of flash, no dependency, and fast enough that storage, not the checksum,
//! limits a transfer. [`Crc32`] is incremental, so a sender or receiver checksums
//! a file chunk by chunk as frames pass and never holds more than one frame.

/// The reflected polynomial: bit 31 of 0x04C11DB7 becomes bit 0.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// `TABLE[b]` is the CRC register after shifting byte `b` through it.
static TABLE: [u32; 256] = build_table();

// Runs at compile time only: an out-of-range index or overflow here would be a
// build error, never a panic on a device. The loop bounds keep both in range.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0usize;
    while byte < 256 {
        let mut register = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            register = if register & 1 == 1 {
                (register >> 1) ^ POLYNOMIAL
            } else {
                register >> 1
            };
            bit += 1;
        }
        table[byte] = register;
        byte += 1;
    }
    table
}

/// An incremental CRC-32 (zlib): feed bytes in any number of pieces, read the
/// checksum at any point.
///
/// ```
/// use smolsock::wire::crc32::{crc32, Crc32};
///
/// let mut crc = Crc32::new();
/// crc.update(b"12345");
/// crc.update(b"6789");
/// assert_eq!(crc.finish(), 0xCBF4_3926);
/// assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Crc32 {
    /// The register before the final XOR.
    register: u32,
}

impl Crc32 {
    /// A checksum over no bytes yet.
    pub const fn new() -> Self {
        Self {
            register: 0xFFFF_FFFF,
        }
    }

    /// Continues a checksum whose value over the bytes so far is `crc`.
    ///
    /// This is how a resumed transfer covers the whole file: the peer reports the
    /// CRC-32 of the prefix it holds, and the checksum goes on from there as if the
    /// prefix had passed through this value. `Crc32::resume(crc32(a))` fed with `b`
    /// finishes as `crc32(a ++ b)`.
    pub const fn resume(crc: u32) -> Self {
        Self {
            register: crc ^ 0xFFFF_FFFF,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut register = self.register;
        for &byte in bytes {
            let index = usize::from(register.to_le_bytes()[0] ^ byte);
            // A u8 index into a 256-entry table: `get` never misses.
            let entry = TABLE.get(index).copied().unwrap_or(0);
            register = (register >> 8) ^ entry;
        }
        self.register = register;
    }

    /// The CRC-32 of every byte fed so far. Does not end the checksum: more bytes
    /// may follow.
    pub const fn finish(&self) -> u32 {
        self.register ^ 0xFFFF_FFFF
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

/// The CRC-32 (zlib) of `bytes` in one call.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The textbook bit-at-a-time CRC, to check the table against.
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut register = 0xFFFF_FFFFu32;
        for &byte in bytes {
            register ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (register & 1).wrapping_neg();
                register = (register >> 1) ^ (POLYNOMIAL & mask);
            }
        }
        !register
    }

    #[test]
    fn check_value_of_123456789_is_cbf43926() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn known_vectors_match_zlib() {
        // Values from Python's zlib.crc32.
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(crc32(b"abc"), 0x3524_41C2);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(crc32(b"hello, world\n"), 0xF424_7453);
        assert_eq!(crc32(&[0u8; 32]), 0x190A_55AD);
        assert_eq!(crc32(&[0xFFu8; 32]), 0xFF6C_AB0B);
    }

    #[test]
    fn table_has_the_published_entries() {
        assert_eq!(TABLE[0], 0);
        assert_eq!(TABLE[1], 0x7707_3096);
        assert_eq!(TABLE[128], 0xEDB8_8320);
        assert_eq!(TABLE[255], 0x2D02_EF8D);
    }

    #[test]
    fn finish_does_not_end_the_checksum() {
        let mut crc = Crc32::new();
        crc.update(b"1234");
        assert_eq!(crc.finish(), crc32(b"1234"));
        crc.update(b"56789");
        assert_eq!(crc.finish(), 0xCBF4_3926);
    }

    #[test]
    fn new_and_default_are_the_empty_checksum() {
        assert_eq!(Crc32::new().finish(), 0);
        assert_eq!(Crc32::default(), Crc32::new());
        assert_eq!(Crc32::resume(0), Crc32::new());
    }

    proptest! {
        #[test]
        fn table_agrees_with_bitwise_definition(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(crc32(&bytes), crc32_bitwise(&bytes));
        }

        #[test]
        fn any_split_gives_the_one_shot_value(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
        ) {
            let cut = cut.index(bytes.len() + 1);
            let (head, tail) = bytes.split_at(cut);
            let mut crc = Crc32::new();
            crc.update(head);
            crc.update(tail);
            prop_assert_eq!(crc.finish(), crc32(&bytes));
        }

        #[test]
        fn resume_from_a_prefix_crc_covers_the_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            cut in any::<prop::sample::Index>(),
        ) {
            let cut = cut.index(bytes.len() + 1);
            let (head, tail) = bytes.split_at(cut);
            let mut crc = Crc32::resume(crc32(head));
            crc.update(tail);
            prop_assert_eq!(crc.finish(), crc32(&bytes));
        }
    }
}
