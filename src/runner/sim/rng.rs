//! The simulation's own small seeded random number generator (SplitMix64).
//!
//! The fault model needs a stream of numbers that is the same on every machine and
//! every build for a given seed, costs eight bytes of state and no crate. SplitMix64
//! passes the usual statistical batteries and is the generator `rand` itself uses to
//! expand seeds; it is far from cryptographic, which a fault model does not need.

/// A SplitMix64 stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream that starts from `seed`; every seed, zero included, gives a good stream.
    pub(crate) const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub(crate) const fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ z.wrapping_shr(30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ z.wrapping_shr(27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ z.wrapping_shr(31)
    }

    /// True with probability `per_mille / 1000` (values above 1000 count as 1000).
    ///
    /// A zero probability draws nothing, so a clean link leaves the stream untouched
    /// and turning one fault on does not reshuffle the others' decisions more than needed.
    pub(crate) const fn chance(&mut self, per_mille: u16) -> bool {
        if per_mille == 0 {
            return false;
        }
        // The modulo bias over 2^64 is below 1e-16: irrelevant here.
        self.next_u64().wrapping_rem(1000) < per_mille as u64
    }

    /// A uniform draw from `0..=max`; `0..=0` draws nothing, like a zero [`chance`](Self::chance).
    pub(crate) const fn up_to(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let draw = self.next_u64();
        match max.checked_add(1) {
            Some(span) => match draw.checked_rem(span) {
                Some(value) => value,
                None => 0,
            },
            None => draw,
        }
    }
}

/// Derives an independent seed for one consumer (`salt`) from the simulation seed,
/// so the two interfaces and the two link directions never share a stream.
pub(crate) const fn derive_seed(seed: u64, salt: u64) -> u64 {
    let mut mixer = SplitMix64::new(seed ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    mixer.next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence_for_seed_zero() {
        // First outputs of the reference splitmix64.c with state 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn chance_follows_its_probability() {
        let mut rng = SplitMix64::new(42);
        let hits = (0..100_000).filter(|_| rng.chance(100)).count();
        assert!((9_000..11_000).contains(&hits), "{hits} hits for 10 %");
        assert!((0..1000).all(|_| !rng.chance(0)));
        assert!((0..1000).all(|_| rng.chance(1000)));
    }

    #[test]
    fn up_to_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.up_to(4);
            assert!(v <= 4);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.up_to(0), 0);
        let _ = rng.up_to(u64::MAX);
    }

    #[test]
    fn derived_seeds_differ_by_salt_and_by_seed() {
        assert_ne!(derive_seed(1, 1), derive_seed(1, 2));
        assert_ne!(derive_seed(1, 1), derive_seed(2, 1));
        assert_eq!(derive_seed(9, 3), derive_seed(9, 3));
    }
}
