//! What the simulated link does to frames, per direction, and how the run is seeded.
//!
//! Everything here is `Copy` with `const fn` builders, so a configuration can be a
//! `const` item shared by tests, examples and firmware self-tests.

use core::num::NonZeroU64;

use smoltcp::time::Duration;

/// The largest IP MTU the link supports: standard Ethernet.
pub const MAX_MTU: u16 = 1500;

/// The smallest IP MTU the link accepts; smaller values are raised to it so an IPv6
/// TCP segment (40 + 20 header bytes) always has room for payload.
pub const MIN_MTU: u16 = 128;

/// Probabilities are in per mille: `1000` is "always", `100` is 10 %.
const PER_MILLE_MAX: u16 = 1000;

/// The fault model of one direction of the link.
///
/// Probabilities are **per mille** (0 to 1000; larger values count as 1000), so
/// `with_loss(100)` loses 10 % of the frames. Each frame put on the wire goes through,
/// in this order:
///
/// 1. **MTU**: a frame longer than `mtu` + 14 bytes of Ethernet header is dropped
///    and counted. The MTU is also what each host's device advertises when the
///    [`SimNet`](super::SimNet) is built, so smoltcp sizes its segments to fit;
///    oversize frames only happen when the MTU is lowered later with
///    [`SimNet::set_faults`](super::SimNet::set_faults) (a path-MTU black hole) or a
///    frame is injected with [`SimNet::inject_frame`](super::SimNet::inject_frame).
/// 2. **Queue**: the direction holds at most `SLOTS` frames in flight (waiting to be
///    serialised or propagating); a frame arriving at a full queue is tail-dropped
///    and counted.
/// 3. **Bandwidth**: a frame starts when the previous one has left and takes
///    `8 × frame length / bandwidth` seconds to serialise (frame bytes as captured:
///    Ethernet header and payload, no preamble or FCS). `None` is unlimited.
/// 4. **Loss**: the frame vanishes on the wire (it still used its serialisation time).
/// 5. **Delay**: it arrives `delay` plus a uniform `0..=jitter` later. Jitter alone
///    never reorders: a frame is never delivered before one sent earlier, as on a
///    real link whose queueing latency varies.
/// 6. **Reordering**: the frame is held back `reorder_hold` longer than it would
///    arrive in line, and does not block those behind it, so frames sent within
///    that time overtake it.
/// 7. **Duplication**: a second copy follows it onto the wire (its own
///    serialisation time, and its own jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct FaultConfig {
    /// Chance a frame is lost, per mille.
    pub loss_per_mille: u16,
    /// Chance a frame is delivered twice, per mille.
    pub duplicate_per_mille: u16,
    /// Chance a frame is held back and overtaken, per mille.
    pub reorder_per_mille: u16,
    /// How much longer than the others a reordered frame takes.
    pub reorder_hold: Duration,
    /// One-way propagation delay.
    pub delay: Duration,
    /// Largest extra random delay added to `delay`, uniform.
    pub jitter: Duration,
    /// IP MTU in bytes (the Ethernet frame may be 14 bytes longer), `MIN_MTU..=MAX_MTU`.
    pub mtu: u16,
    /// Serialisation rate in bits per second; `None` is unlimited.
    pub bandwidth_bps: Option<NonZeroU64>,
}

impl FaultConfig {
    /// A perfect link: no loss, no delay, unlimited bandwidth, MTU 1500.
    pub const CLEAN: Self = Self {
        loss_per_mille: 0,
        duplicate_per_mille: 0,
        reorder_per_mille: 0,
        reorder_hold: Duration::from_millis(1),
        delay: Duration::from_micros(0),
        jitter: Duration::from_micros(0),
        mtu: MAX_MTU,
        bandwidth_bps: None,
    };

    /// The rough link every service is tested over: 10 % loss, 5 % duplication,
    /// 5 % reordering, MTU 576, 1 ms delay with 1 ms jitter, unlimited bandwidth.
    pub const ROUGH: Self = Self::CLEAN
        .with_loss(100)
        .with_duplication(50)
        .with_reordering(50)
        .with_mtu(576)
        .with_delay(Duration::from_millis(1))
        .with_jitter(Duration::from_millis(1));

    /// The same, losing `per_mille` frames in a thousand.
    #[must_use]
    pub const fn with_loss(mut self, per_mille: u16) -> Self {
        self.loss_per_mille = clamp_per_mille(per_mille);
        self
    }

    /// The same, delivering `per_mille` frames in a thousand twice.
    #[must_use]
    pub const fn with_duplication(mut self, per_mille: u16) -> Self {
        self.duplicate_per_mille = clamp_per_mille(per_mille);
        self
    }

    /// The same, holding back `per_mille` frames in a thousand so later ones overtake.
    #[must_use]
    pub const fn with_reordering(mut self, per_mille: u16) -> Self {
        self.reorder_per_mille = clamp_per_mille(per_mille);
        self
    }

    /// The same, with reordered frames held back `hold` (default 1 ms) beyond the others.
    #[must_use]
    pub const fn with_reorder_hold(mut self, hold: Duration) -> Self {
        self.reorder_hold = hold;
        self
    }

    /// The same, with a one-way propagation delay.
    #[must_use]
    pub const fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The same, adding up to `jitter` of uniform random delay to each frame.
    #[must_use]
    pub const fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// The same, with an IP MTU of `mtu` bytes, clamped to [`MIN_MTU`]`..=`[`MAX_MTU`].
    #[must_use]
    pub const fn with_mtu(mut self, mtu: u16) -> Self {
        self.mtu = if mtu < MIN_MTU {
            MIN_MTU
        } else if mtu > MAX_MTU {
            MAX_MTU
        } else {
            mtu
        };
        self
    }

    /// The same, serialising at `bits_per_second`; `0` means unlimited.
    #[must_use]
    pub const fn with_bandwidth(mut self, bits_per_second: u64) -> Self {
        self.bandwidth_bps = NonZeroU64::new(bits_per_second);
        self
    }

    /// The largest Ethernet frame this direction carries: the MTU plus the 14-byte header.
    pub const fn max_frame_len(&self) -> usize {
        // `mtu` is within `MIN_MTU..=MAX_MTU` whatever a caller wrote into the
        // public field (below, smoltcp's segment size arithmetic would underflow).
        let mtu = if self.mtu > MAX_MTU {
            MAX_MTU
        } else if self.mtu < MIN_MTU {
            MIN_MTU
        } else {
            self.mtu
        };
        (mtu as usize).saturating_add(ETHERNET_HEADER_LEN)
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self::CLEAN
    }
}

/// Bytes of Ethernet header in front of the IP packet (no VLAN tag).
pub(crate) const ETHERNET_HEADER_LEN: usize = 14;

const fn clamp_per_mille(per_mille: u16) -> u16 {
    if per_mille > PER_MILLE_MAX {
        PER_MILLE_MAX
    } else {
        per_mille
    }
}

/// Everything that decides a simulated run: the seed and each direction's faults.
///
/// The same configuration, the same sockets and the same calls give the same run,
/// bit for bit: the seed drives the fault model of each direction and also becomes
/// each interface's [`Config::random_seed`](smoltcp::iface::Config::random_seed)
/// (smoltcp defaults that to 0, which makes TCP initial sequence numbers and
/// ephemeral choices predictable; every runner must seed it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct SimConfig {
    /// Seed of the fault model and of both interfaces.
    pub seed: u64,
    /// Faults on frames the server sends.
    pub server_to_client: FaultConfig,
    /// Faults on frames the client sends.
    pub client_to_server: FaultConfig,
    /// The longest virtual-time step taken when nothing is scheduled, so that
    /// services with timers they do not announce through `poll_at` are still polled.
    /// Default 10 ms; never below 1 µs.
    pub max_idle_step: Duration,
    /// A listen [`Backlog`](crate::net::Backlog) in front of each host's stack
    /// (default on): a SYN to a pool with no free slot is held, not refused.
    pub backlog: bool,
}

impl SimConfig {
    /// A clean link both ways, seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self {
            seed,
            server_to_client: FaultConfig::CLEAN,
            client_to_server: FaultConfig::CLEAN,
            max_idle_step: Duration::from_millis(10),
            backlog: true,
        }
    }

    /// The same, with the listen backlog on or off (off: smoltcp refuses a SYN
    /// that finds no socket listening with a RST).
    #[must_use]
    pub const fn with_backlog(mut self, backlog: bool) -> Self {
        self.backlog = backlog;
        self
    }

    /// The same, with `faults` in both directions.
    #[must_use]
    pub const fn with_faults(mut self, faults: FaultConfig) -> Self {
        self.server_to_client = faults;
        self.client_to_server = faults;
        self
    }

    /// The same, with `faults` on frames the server sends.
    #[must_use]
    pub const fn with_server_to_client(mut self, faults: FaultConfig) -> Self {
        self.server_to_client = faults;
        self
    }

    /// The same, with `faults` on frames the client sends.
    #[must_use]
    pub const fn with_client_to_server(mut self, faults: FaultConfig) -> Self {
        self.client_to_server = faults;
        self
    }

    /// The same, with a different longest idle step (raised to 1 µs if zero).
    #[must_use]
    pub const fn with_max_idle_step(mut self, step: Duration) -> Self {
        self.max_idle_step = if step.total_micros() == 0 {
            Duration::from_micros(1)
        } else {
            step
        };
        self
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::new(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_clamp_out_of_range_values() {
        let f = FaultConfig::CLEAN
            .with_loss(5000)
            .with_duplication(1001)
            .with_reordering(7)
            .with_mtu(20);
        assert_eq!(f.loss_per_mille, 1000);
        assert_eq!(f.duplicate_per_mille, 1000);
        assert_eq!(f.reorder_per_mille, 7);
        assert_eq!(f.mtu, MIN_MTU);
        assert_eq!(FaultConfig::CLEAN.with_mtu(9000).mtu, MAX_MTU);
        assert_eq!(FaultConfig::CLEAN.with_bandwidth(0).bandwidth_bps, None);
        let step = SimConfig::new(1).with_max_idle_step(Duration::from_micros(0));
        assert_eq!(step.max_idle_step, Duration::from_micros(1));
    }

    #[test]
    fn max_frame_len_adds_the_ethernet_header() {
        assert_eq!(FaultConfig::CLEAN.max_frame_len(), 1514);
        assert_eq!(FaultConfig::ROUGH.max_frame_len(), 590);
        let mut wild = FaultConfig::CLEAN;
        wild.mtu = u16::MAX;
        assert_eq!(wild.max_frame_len(), 1514);
    }

    #[test]
    fn rough_is_the_documented_test_link() {
        let f = FaultConfig::ROUGH;
        assert_eq!(
            (
                f.loss_per_mille,
                f.duplicate_per_mille,
                f.reorder_per_mille,
                f.mtu
            ),
            (100, 50, 50, 576)
        );
    }
}
