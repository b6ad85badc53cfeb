//! The CRC-32 that checks every transferred file end to end.
//!
//! This is the CRC-32 of zlib, PNG and Ethernet (CRC-32/ISO-HDLC, Python's
//! `zlib.crc32`): polynomial 0x04C11DB7 processed bit-reflected (0xEDB88320),
//! initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF, check value 0xCBF43926 for
//! `"123456789"`. `PROTOCOL.md` names it, so any language's zlib binding can
//! talk to smolsock.
//!
//! It is computed a machine word at a time ("slicing-by-N") from 256-entry
//! tables built at compile time, no dependency: on 64-bit targets eight bytes a
//! step from eight tables (8 KiB), on 32-bit ones (microcontrollers) four bytes
//! a step from four (4 KiB of flash: a word is what a 32-bit core loads at
//! once, and eight bytes would be the same lookups for twice the tables). A
//! byte-at-a-time table (1 KiB) ran at 265-300 MB/s on the benchmark host,
//! which made the checksum, not the link, the limit of a 100 MiB transfer over
//! TAP (the client checksums the file before PUT, the store as the bytes
//! arrive); eight bytes a step ran at 1,150-1,250 MB/s there. On x86-64 processors with carry-less
//! multiplication (`PCLMULQDQ`, found at run time), 64 bytes and more are
//! folded sixteen bytes a step instead: 11 GiB/s there, about half of what
//! `crc32fast` reaches with the 256-bit form of the instruction
//! (`cargo bench --bench crc`, docs/BENCHMARKS.md). [`Crc32`] is incremental,
//! so a sender or receiver checksums a file chunk by chunk as frames pass and
//! never holds more than one frame.

/// The reflected polynomial: bit 31 of 0x04C11DB7 becomes bit 0.
const POLYNOMIAL: u32 = 0xEDB8_8320;

/// Bytes a step, and tables: a machine word.
const SLICES: usize = if cfg!(target_pointer_width = "64") {
    8
} else {
    4
};

/// `TABLES[0][b]` is the CRC register after shifting byte `b` through it;
/// `TABLES[k][b]` is that register shifted through `k` more zero bytes, so
/// `SLICES` lookups advance the register by `SLICES` bytes at once.
static TABLES: [[u32; 256]; SLICES] = build_tables();

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
const fn build_tables<const N: usize>() -> [[u32; 256]; N] {
    let mut tables = [[0u32; 256]; N];
    tables[0] = build_table();
    let mut byte = 0usize;
    while byte < 256 {
        let mut k = 1;
        while k < N {
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
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if let Some(register) = clmul::update(self.register, bytes) {
            self.register = register;
            return;
        }
        self.register = update_tables(self.register, bytes);
    }

    /// The CRC-32 of every byte fed so far. Does not end the checksum: more bytes
    /// may follow.
    pub const fn finish(&self) -> u32 {
        self.register ^ 0xFFFF_FFFF
    }
}

/// The register after `bytes`, a word a step through the tables.
fn update_tables(register: u32, bytes: &[u8]) -> u32 {
    #[cfg(target_pointer_width = "64")]
    return update_by_8(register, bytes, &TABLES);
    #[cfg(not(target_pointer_width = "64"))]
    return update_by_4(register, bytes, &TABLES);
}

/// The register after `bytes`, eight bytes a step through eight tables.
#[cfg(any(test, target_pointer_width = "64"))]
fn update_by_8(register: u32, bytes: &[u8], tables: &[[u32; 256]; 8]) -> u32 {
    let [t0, t1, t2, t3, t4, t5, t6, t7] = tables;
    let mut register = register;
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
    update_bytes(register, blocks.remainder(), t0)
}

/// The register after `bytes`, four bytes a step through four tables.
#[cfg(any(test, not(target_pointer_width = "64")))]
fn update_by_4(register: u32, bytes: &[u8], tables: &[[u32; 256]; 4]) -> u32 {
    let [t0, t1, t2, t3] = tables;
    let mut register = register;
    let mut words = bytes.chunks_exact(4);
    for word in &mut words {
        // Always 4 bytes: that is what `chunks_exact(4)` hands out.
        let word = <[u8; 4]>::try_from(word).unwrap_or_default();
        let [a, b, c, d] = (register ^ u32::from_le_bytes(word)).to_le_bytes();
        register = entry(t3, a) ^ entry(t2, b) ^ entry(t1, c) ^ entry(t0, d);
    }
    update_bytes(register, words.remainder(), t0)
}

/// The register after `bytes`, a byte a step.
fn update_bytes(register: u32, bytes: &[u8], t0: &[u32; 256]) -> u32 {
    let mut register = register;
    for &byte in bytes {
        register = (register >> 8) ^ entry(t0, register.to_le_bytes()[0] ^ byte);
    }
    register
}

/// CRC-32 sixteen bytes a step by carry-less multiplication (x86-64's
/// `PCLMULQDQ`), where the processor has it: the message is folded, 64 bytes at a
/// time in four lanes, into 16 bytes whose CRC is the message's, and the tables
/// finish those 16 and the tail.
///
/// Folding: with the register XORed into the first four bytes, the CRC of a
/// message is its remainder modulo the polynomial P, so any 16 bytes that leave
/// the same remainder can stand for everything before the next 16. A block `X`
/// followed by `n` more bits is worth `X * x^n mod P`; split into its two 64-bit
/// halves, that is two carry-less products with the constants `x^k mod P`
/// computed below at compile time. In the reflected bit order of this CRC a
/// carry-less product of two reflected operands comes out multiplied by `x`
/// once more, which the exponents take back (`n + 64 - 1` for the half that
/// comes first, `n - 1` for the other).
///
/// This is the one module of the crate's core with `unsafe`: the processor
/// instructions. The `unsafe` operations are calling a function compiled for
/// `pclmulqdq` (only after CPUID said the processor has it), CPUID itself, and
/// the unaligned 16-byte load of a block. It needs SSE2's 128-bit registers,
/// which every x86-64 target has but those without a floating-point unit
/// (`x86_64-unknown-none`): there the tables do all the work.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
mod clmul {
    use core::arch::x86_64::{
        __cpuid, __m128i, _mm_clmulepi64_si128, _mm_cvtsi32_si128, _mm_cvtsi128_si64,
        _mm_loadu_si128, _mm_set_epi64x, _mm_unpackhi_epi64, _mm_xor_si128,
    };
    use core::sync::atomic::{AtomicU8, Ordering};

    /// Below this many bytes the tables are as quick.
    const MIN_LEN: usize = 64;

    /// `x^n mod P` in normal bit order (bit `k` is the coefficient of `x^k`),
    /// P = x^32 + 0x04C11DB7, by shifting one bit at a time.
    // Compile time only: the shift drops the bit it tests, nothing overflows.
    #[allow(clippy::arithmetic_side_effects)]
    const fn x_pow_mod_p(n: u32) -> u32 {
        let mut remainder: u32 = 1;
        let mut i = 0;
        while i < n {
            let carry = remainder & 0x8000_0000 != 0;
            remainder <<= 1;
            if carry {
                remainder ^= 0x04C1_1DB7;
            }
            i += 1;
        }
        remainder
    }

    /// A remainder as a 64-bit lane in this CRC's reflected order: the
    /// coefficient of `x^k` in bit `63 - k`.
    const fn lane(remainder: u32) -> i64 {
        (remainder as u64).reverse_bits() as i64
    }

    /// (first half, second half) constants to carry a block `bits` further on.
    // Used for constants only, so evaluated at compile time, where an overflow
    // would be a build error.
    #[allow(clippy::arithmetic_side_effects)]
    const fn fold_constants(bits: u32) -> (i64, i64) {
        (
            lane(x_pow_mod_p(bits + 64 - 1)),
            lane(x_pow_mod_p(bits - 1)),
        )
    }

    const FOLD_BY_1: (i64, i64) = fold_constants(128);
    /// Blocks folded side by side.
    const LANES: usize = 8;
    const FOLD_BY_LANES: (i64, i64) = fold_constants(LANES as u32 * 128);

    /// 0: not asked yet, 1: no `PCLMULQDQ`, 2: present.
    static HAS_PCLMULQDQ: AtomicU8 = AtomicU8::new(0);

    fn available() -> bool {
        if cfg!(target_feature = "pclmulqdq") {
            return true;
        }
        match HAS_PCLMULQDQ.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                // SAFETY: CPUID leaf 1 exists on every x86-64 processor.
                #[allow(unused_unsafe)]
                let features = unsafe { __cpuid(1) };
                let present = features.ecx & (1 << 1) != 0;
                HAS_PCLMULQDQ.store(if present { 2 } else { 1 }, Ordering::Relaxed);
                present
            }
        }
    }

    /// The register after `bytes`, or `None` where this path does not apply
    /// (few bytes, or a processor without the instruction).
    pub(super) fn update(register: u32, bytes: &[u8]) -> Option<u32> {
        if bytes.len() < MIN_LEN || !available() {
            return None;
        }
        // SAFETY: `available` found `pclmulqdq`; SSE2 is on (this module's cfg).
        let (folded, tail) = unsafe { fold(register, bytes) };
        Some(super::update_tables(super::update_tables(0, &folded), tail))
    }

    /// A 16-byte block as a 128-bit value, little-endian.
    fn load(block: &[u8; 16]) -> __m128i {
        // SAFETY: `block` is 16 bytes, which is all `_mm_loadu_si128` reads, with
        // no alignment required; SSE2 is on (this module's cfg).
        unsafe { _mm_loadu_si128(block.as_ptr().cast::<__m128i>()) }
    }

    /// `block` carried `constants`' distance on.
    #[target_feature(enable = "pclmulqdq")]
    fn carry(block: __m128i, constants: __m128i) -> __m128i {
        _mm_xor_si128(
            _mm_clmulepi64_si128::<0x00>(block, constants),
            _mm_clmulepi64_si128::<0x11>(block, constants),
        )
    }

    /// Folds the whole 16-byte blocks of `bytes` (at least one) into 16 bytes
    /// that stand for them, the register XORed into the first; returns those
    /// and the bytes left over (fewer than 16). Eight blocks at a time go
    /// through eight independent lanes, so that the multiplier is never idle
    /// waiting for the product before.
    #[target_feature(enable = "pclmulqdq")]
    fn fold(register: u32, bytes: &[u8]) -> ([u8; 16], &[u8]) {
        let by_lanes = _mm_set_epi64x(FOLD_BY_LANES.1, FOLD_BY_LANES.0);
        let by_1 = _mm_set_epi64x(FOLD_BY_1.1, FOLD_BY_1.0);
        let (blocks, tail) = bytes.as_chunks::<16>();
        let start = _mm_cvtsi32_si128(i32::from_ne_bytes(register.to_ne_bytes()));
        let (mut folded, mut blocks) = match blocks.split_first() {
            Some((first, rest)) => (_mm_xor_si128(load(first), start), rest),
            None => (start, blocks),
        };
        if blocks.len() >= 2 * LANES - 1 {
            let mut lanes = [folded; LANES];
            if let Some((firsts, rest)) = blocks.split_first_chunk::<{ LANES - 1 }>() {
                for (lane, block) in lanes.iter_mut().skip(1).zip(firsts) {
                    *lane = load(block);
                }
                blocks = rest;
            }
            while let Some((group, rest)) = blocks.split_first_chunk::<LANES>() {
                for (lane, block) in lanes.iter_mut().zip(group) {
                    *lane = _mm_xor_si128(carry(*lane, by_lanes), load(block));
                }
                blocks = rest;
            }
            let [first, rest @ ..] = lanes;
            folded = first;
            for lane in rest {
                folded = _mm_xor_si128(carry(folded, by_1), lane);
            }
        }
        for block in blocks {
            folded = _mm_xor_si128(carry(folded, by_1), load(block));
        }
        let low = u64::from_ne_bytes(_mm_cvtsi128_si64(folded).to_ne_bytes());
        let high = _mm_cvtsi128_si64(_mm_unpackhi_epi64(folded, folded));
        let high = u64::from_ne_bytes(high.to_ne_bytes());
        (
            ((u128::from(high) << 64) | u128::from(low)).to_le_bytes(),
            tail,
        )
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
    fn four_bytes_a_step_as_on_32_bit_targets_matches_the_bitwise_definition() {
        // Both sets built here: `TABLES` has only the target's own (four on
        // 32-bit targets, where this test must build too).
        let four: [[u32; 256]; 4] = build_tables();
        let eight: [[u32; 256]; 8] = build_tables();
        let bytes: Vec<u8> = (0..1031u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for start in 0..5 {
            for end in [start, start + 3, start + 4, 1031] {
                let piece = &bytes[start..end];
                assert_eq!(
                    update_by_4(0xFFFF_FFFF, piece, &four) ^ 0xFFFF_FFFF,
                    crc32_bitwise(piece),
                    "{start}..{end}"
                );
                assert_eq!(
                    update_by_4(0x1234_5678, piece, &four),
                    update_by_8(0x1234_5678, piece, &eight),
                    "{start}..{end}"
                );
            }
        }
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

    /// Deterministic bytes that are not all alike.
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    fn every_length_and_alignment_agrees_with_the_bitwise_definition() {
        // Lengths around every fold boundary (16 and 64 bytes), at every offset
        // from a 16-byte boundary, and with a register that is not the start.
        let bytes = noise(600 + 16, 1);
        for start in 0..16 {
            for len in 0..=600 {
                let piece = &bytes[start..start + len];
                assert_eq!(crc32(piece), crc32_bitwise(piece), "len {len} at {start}");
                let mut crc = Crc32::resume(0x1234_5678);
                crc.update(piece);
                assert_eq!(
                    crc.register,
                    update_tables(Crc32::resume(0x1234_5678).register, piece),
                    "resumed, len {len} at {start}"
                );
            }
        }
    }

    /// The carry-less path itself, where the processor has it (every x86-64 of
    /// the last fifteen years): it must take every input of 64 bytes or more.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_carryless_path_is_taken_here_and_agrees_with_the_tables() {
        if !std::is_x86_feature_detected!("pclmulqdq") {
            eprintln!("no PCLMULQDQ here: only the tables were checked");
            return;
        }
        let bytes = noise(1200 + 16, 3);
        for start in 0..16 {
            for len in 0..=1200 {
                let piece = &bytes[start..start + len];
                let expected = (len >= 64).then(|| update_tables(0x89AB_CDEF, piece));
                assert_eq!(
                    clmul::update(0x89AB_CDEF, piece),
                    expected,
                    "len {len} at {start}"
                );
            }
        }
    }

    #[test]
    fn several_mib_agree_with_the_tables_alone() {
        let bytes = noise(3 * 1024 * 1024 + 7, 2);
        let by_tables = update_tables(0xFFFF_FFFF, &bytes) ^ 0xFFFF_FFFF;
        assert_eq!(crc32(&bytes), by_tables);
        // In uneven pieces, as frames arrive.
        let mut crc = Crc32::new();
        for piece in bytes.chunks(65_531) {
            crc.update(piece);
        }
        assert_eq!(crc.finish(), by_tables);
    }

    #[test]
    fn all_zeros_and_all_ones_agree_with_the_tables_alone() {
        for len in [64, 65, 127, 128, 1000, 4096] {
            for byte in [0u8, 0xFF] {
                let bytes = vec![byte; len];
                assert_eq!(crc32(&bytes), crc32_bitwise(&bytes), "{len} x {byte:#x}");
            }
        }
    }

    proptest! {
        #[test]
        fn large_pieces_in_any_split_give_the_one_shot_value(
            bytes in proptest::collection::vec(any::<u8>(), 0..5000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut crc = Crc32::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                crc.update(&bytes[at..cut]);
                at = cut;
            }
            prop_assert_eq!(crc.finish(), crc32_bitwise(&bytes));
        }

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
