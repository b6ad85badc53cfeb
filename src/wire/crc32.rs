//! The CRC-32 that checks every transferred file end to end.
//!
//! This is the CRC-32 of zlib, PNG and Ethernet (CRC-32/ISO-HDLC, Python's
//! `zlib.crc32`): polynomial 0x04C11DB7 processed bit-reflected (0xEDB88320),
//! initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF, check value 0xCBF43926 for
//! `"123456789"`. `PROTOCOL.md` names it, so any language's zlib binding can
//! talk to smolsock.
//!
//! It is computed eight bytes at a time ("slicing-by-8") from eight 256-entry
//! tables built at compile time: 8 KiB of flash, no dependency. A byte-at-a-time
//! table (1 KiB) ran at 265-300 MB/s on the benchmark host, which made the
//! checksum, not the link, the limit of a 100 MiB transfer over TAP (the client
//! checksums the file before PUT, the store again at commit); eight bytes a step
//! ran at 1,150-1,250 MB/s there (docs/BENCHMARKS.md). [`Crc32`] is incremental,
//! so a sender or receiver checksums a file chunk by chunk as frames pass and never
//! holds more than one frame.

/// The reflected polynomial: bit 31 of 0x04C11DB7 becomes bit 0.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// `TABLES[0][b]` is the CRC register after shifting byte `b` through it;
/// `TABLES[k][b]` is that register shifted through `k` more zero bytes, so eight
/// lookups advance the register by eight bytes at once.
static TABLES: [[u32; 256]; 8] = build_tables();

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

// Compile time only, as above.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
const fn build_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    tables[0] = build_table();
    let mut byte = 0usize;
    while byte < 256 {
        let mut k = 1;
        while k < 8 {
            let previous = tables[k - 1][byte];
            tables[k][byte] = (previous >> 8) ^ tables[0][(previous & 0xFF) as usize];
            k += 1;
        }
        byte += 1;
    }
    tables
}

/// `table[b]`: a `u8` index into 256 entries never misses, and the compiler
/// knows it, so this is one load.
#[inline(always)]
fn entry(table: &[u32; 256], byte: u8) -> u32 {
    table.get(usize::from(byte)).copied().unwrap_or(0)
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
        let [t0, t1, t2, t3, t4, t5, t6, t7] = &TABLES;
        let mut register = self.register;
        let mut blocks = bytes.chunks_exact(8);
        for block in &mut blocks {
            // Always 8 bytes: that is what `chunks_exact(8)` hands out.
            let [a, b, c, d, e, f, g, h] = <[u8; 8]>::try_from(block).unwrap_or_default();
            let [a, b, c, d] = (register ^ u32::from_le_bytes([a, b, c, d])).to_le_bytes();
            register = entry(t7, a)
                ^ entry(t6, b)
                ^ entry(t5, c)
                ^ entry(t4, d)
                ^ entry(t3, e)
                ^ entry(t2, f)
                ^ entry(t1, g)
                ^ entry(t0, h);
        }
        for &byte in blocks.remainder() {
            register = (register >> 8) ^ entry(t0, register.to_le_bytes()[0] ^ byte);
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
        assert_eq!(TABLES[0][0], 0);
        assert_eq!(TABLES[0][1], 0x7707_3096);
        assert_eq!(TABLES[0][128], 0xEDB8_8320);
        assert_eq!(TABLES[0][255], 0x2D02_EF8D);
    }

    #[test]
    fn each_slice_table_entry_is_its_byte_then_k_zero_bytes_bit_by_bit() {
        // Independent of `build_tables`: the register (starting at 0, no final
        // XOR) after byte `b` and then `k` zero bytes, one bit at a time.
        let register_after = |b: u8, zeros: usize| {
            let mut register = u32::from(b);
            for _ in 0..8 * (1 + zeros) {
                let mask = (register & 1).wrapping_neg();
                register = (register >> 1) ^ (POLYNOMIAL & mask);
            }
            register
        };
        for (k, table) in TABLES.iter().enumerate() {
            for (b, entry) in (0..=255u8).zip(table) {
                assert_eq!(*entry, register_after(b, k), "TABLES[{k}][{b}]");
            }
        }
        // The second table's first entries, as published with slicing-by-8.
        assert_eq!(TABLES[1][1], 0x191B_3141);
        assert_eq!(TABLES[1][2], 0x3236_6282);
    }

    #[test]
    fn long_inputs_at_every_alignment_match_the_bitwise_definition() {
        let bytes: Vec<u8> = (0..4099u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            assert_eq!(
                crc32(&bytes[start..]),
                crc32_bitwise(&bytes[start..]),
                "start {start}"
            );
        }
        // A mebibyte of zeros: Python's zlib.crc32(bytes(1 << 20)).
        assert_eq!(crc32(&vec![0u8; 1 << 20]), 0xA738_EA1C);
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
