//! [`TapRunner`]: the interface, the device and the sockets, driven against the real
//! clock until a stop flag is set.

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};
use std::io;

use crate::time::{later, sooner, until};
use log::{debug, info, warn};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::{Socket, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr, Ipv6Address,
    Ipv6Cidr,
};

use super::device::{OpenError, TapBacked, TapDevice, TapStats};
use super::sys;
use crate::net::{Backlog, BacklogStats, Service};

/// The backlog of a TAP runner: 32 held SYNs, 16 ports, 1024 connections watched.
type TapBacklog = Backlog<32, 16, 1024>;

/// How the stack presents itself on the TAP link.
///
/// The defaults match smoltcp's examples and `tap-setup.sh`: the stack is
/// 192.168.69.1/24 and fdaa::1/64, the Linux side of the link (192.168.69.100 and
/// fdaa::100) is the default gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// The stack's Ethernet address; must be unicast.
    pub hardware_addr: EthernetAddress,
    /// The stack's IPv4 address and prefix, or `None` for no IPv4.
    pub ipv4: Option<Ipv4Cidr>,
    /// The stack's IPv6 address and prefix, or `None` for no IPv6.
    pub ipv6: Option<Ipv6Cidr>,
    /// Where IPv4 packets for other networks go.
    pub ipv4_gateway: Option<Ipv4Address>,
    /// Where IPv6 packets for other networks go.
    pub ipv6_gateway: Option<Ipv6Address>,
    /// After `stop`, how long [`TapRunner::run`] waits for TCP connections to close
    /// before it resets the rest.
    pub close_grace: Duration,
    /// The longest an idle [`TapRunner::run`] sleeps before it looks at `stop` again.
    pub stop_check: Duration,
    /// A listen [`Backlog`] in front of the stack (default on): a SYN to a pool
    /// with no free slot is held, not refused, as with Linux's `listen(n)`.
    pub backlog: bool,
}

impl TapConfig {
    /// The defaults, usable in a `const` or `static`.
    pub const DEFAULT: Self = Self {
        hardware_addr: EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]),
        ipv4: Some(Ipv4Cidr::new(Ipv4Address::new(192, 168, 69, 1), 24)),
        ipv6: Some(Ipv6Cidr::new(
            Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1),
            64,
        )),
        ipv4_gateway: Some(Ipv4Address::new(192, 168, 69, 100)),
        ipv6_gateway: Some(Ipv6Address::new(0xfdaa, 0, 0, 0, 0, 0, 0, 0x100)),
        close_grace: Duration::from_secs(2),
        stop_check: Duration::from_millis(100),
        backlog: true,
    };

    /// The defaults (see [`TapConfig::DEFAULT`]).
    pub const fn new() -> Self {
        Self::DEFAULT
    }
}

impl Default for TapConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a [`TapRunner`] could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum SetupError {
    /// The TAP device could not be opened.
    Open(OpenError),
    /// The kernel gave no random seed (`getrandom`); without one every run would
    /// pick the same TCP sequence numbers and ports.
    Seed(io::Error),
    /// The Ethernet address is a multicast or broadcast address.
    HardwareAddressNotUnicast,
    /// An interface address is not a unicast address.
    AddressNotUnicast(IpAddress),
    /// More addresses than smoltcp's `iface-max-addr-count` allows.
    TooManyAddresses,
    /// More default routes than smoltcp's `iface-max-route-count` allows.
    TooManyRoutes,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open(e) => write!(f, "{e}"),
            Self::Seed(e) => write!(f, "cannot draw a random seed: {e}"),
            Self::HardwareAddressNotUnicast => f.write_str("the Ethernet address is not unicast"),
            Self::AddressNotUnicast(a) => write!(f, "the address {a} is not unicast"),
            Self::TooManyAddresses => f.write_str("more addresses than the interface holds"),
            Self::TooManyRoutes => f.write_str("more routes than the interface holds"),
        }
    }
}

impl core::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Open(e) => Some(e),
            Self::Seed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<OpenError> for SetupError {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}

/// Why [`TapRunner::run`] gave up.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// Waiting on the TAP descriptor failed (not by a signal): the interface was
    /// deleted (`ENODEV`) or the descriptor is unusable, so polling on would only
    /// spin. A link that is merely down is not an error.
    Wait(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wait(e) => write!(f, "waiting on the TAP device failed: {e}"),
        }
    }
}

impl core::error::Error for RunError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Wait(e) => Some(e),
        }
    }
}

/// How the TCP connections open when `stop` was seen ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Connections that closed within the grace time (FIN exchanged).
    pub closed: usize,
    /// Connections still open when the grace time ran out; they were reset.
    pub aborted: usize,
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connection(s) closed, {} reset",
            self.closed, self.aborted
        )
    }
}

/// A smoltcp stack on a TAP link: the [`Interface`], the device and the sockets,
/// driven by [`TapRunner::run`] with the services on top.
///
/// `D` is the [`TapDevice`] itself or smoltcp's [`PcapWriter`](smoltcp::phy::PcapWriter)
/// or [`Tracer`](smoltcp::phy::Tracer) around it (see [`TapBacked`]), so a capture is
/// one wrapper away:
///
/// ```no_run
/// use std::sync::atomic::AtomicBool;
/// use smoltcp::iface::SocketSet;
/// use smoltcp::phy::{PcapMode, PcapWriter};
/// use smolsock::runner::tap::{TapConfig, TapDevice, TapRunner};
///
/// let device = TapDevice::open("tap0")?;
/// let capture = std::io::BufWriter::new(std::fs::File::create("tap0.pcap")?);
/// let device = PcapWriter::new(device, capture, PcapMode::Both);
/// let mut runner = TapRunner::new(device, &TapConfig::default(), SocketSet::new(vec![]))?;
/// // add sockets with runner.sockets_mut().add(..), build services on their handles
/// let stop = AtomicBool::new(false);
/// let report = runner.run(&mut [], &stop)?;
/// println!("{report}; {}", runner.tap_stats());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TapRunner<'a, D: TapBacked = TapDevice> {
    /// The stack's time is what has passed since then, on the monotonic clock:
    /// smoltcp's own `Instant::now` is the wall clock, which a step of the
    /// system's time (NTP, `date -s`) would move back or forward, stalling or
    /// firing every timer at once.
    started: std::time::Instant,
    iface: Interface,
    device: D,
    sockets: SocketSet<'a>,
    backlog: Option<TapBacklog>,
    close_grace: Duration,
    stop_check: Duration,
}

impl<'a> TapRunner<'a, TapDevice> {
    /// Opens the TAP interface `name` (see [`TapDevice::open`]) and builds the stack
    /// on it.
    pub fn open(
        name: &str,
        config: &TapConfig,
        sockets: SocketSet<'a>,
    ) -> Result<Self, SetupError> {
        let device = TapDevice::open(name)?;
        Self::new(device, config, sockets)
    }
}

impl<'a, D: TapBacked> TapRunner<'a, D> {
    /// Builds the interface on `device` with the addresses and routes of `config`,
    /// seeding smoltcp's random number generator from the kernel (smoltcp leaves the
    /// seed at 0, which makes TCP initial sequence numbers predictable).
    pub fn new(
        mut device: D,
        config: &TapConfig,
        sockets: SocketSet<'a>,
    ) -> Result<Self, SetupError> {
        validate(config)?;
        let addresses = config
            .ipv4
            .map(IpCidr::Ipv4)
            .into_iter()
            .chain(config.ipv6.map(IpCidr::Ipv6));

        let mut iface_config = Config::new(HardwareAddress::Ethernet(config.hardware_addr));
        iface_config.random_seed = sys::random_u64().map_err(SetupError::Seed)?;
        let started = std::time::Instant::now();
        let mut iface = Interface::new(iface_config, &mut device, since(started));

        let mut too_many = false;
        iface.update_ip_addrs(|ip_addrs| {
            for cidr in addresses {
                too_many |= ip_addrs.push(cidr).is_err();
            }
        });
        if too_many {
            return Err(SetupError::TooManyAddresses);
        }
        if let Some(gateway) = config.ipv4_gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .map_err(|_| SetupError::TooManyRoutes)?;
        }
        if let Some(gateway) = config.ipv6_gateway {
            iface
                .routes_mut()
                .add_default_ipv6_route(gateway)
                .map_err(|_| SetupError::TooManyRoutes)?;
        }
        let shown =
            |cidr: Option<IpCidr>| cidr.map_or_else(|| "none".to_string(), |c| c.to_string());
        info!(
            "tap {}: stack at {} and {}, frames up to {} bytes",
            device.tap().name(),
            shown(config.ipv4.map(IpCidr::Ipv4)),
            shown(config.ipv6.map(IpCidr::Ipv6)),
            device.tap().frame_capacity()
        );
        Ok(Self {
            started,
            iface,
            device,
            sockets,
            backlog: config.backlog.then(Backlog::new),
            close_grace: config.close_grace,
            stop_check: config.stop_check,
        })
    }

    /// The smoltcp interface (addresses, routes, neighbor cache).
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// The smoltcp interface, to change addresses or routes.
    pub fn interface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The device, with its wrappers.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, with its wrappers.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The listen backlog's counters (`None` if [`TapConfig::backlog`] is off).
    pub fn backlog_stats(&self) -> Option<BacklogStats> {
        self.backlog.as_ref().map(Backlog::stats)
    }

    /// The TAP device's counters.
    pub fn tap_stats(&self) -> TapStats {
        self.device.tap().stats()
    }

    /// The sockets the services work on.
    pub fn sockets(&self) -> &SocketSet<'a> {
        &self.sockets
    }

    /// The sockets, to add the ones the services will use.
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.sockets
    }

    /// One round at the current time: moves frames in and out, polls every service,
    /// and returns how long the stack may sleep before the next round (`None`: until
    /// a frame arrives). [`TapRunner::run`] is this plus [`TapRunner::wait`] in a loop,
    /// for callers that want their own loop.
    pub fn poll(&mut self, services: &mut [&mut dyn Service]) -> Option<Duration> {
        let now = since(self.started);
        match &mut self.backlog {
            Some(backlog) => {
                backlog.sync(&self.iface, &mut self.sockets, now);
                self.iface.poll(
                    now,
                    &mut backlog.device(&mut self.device),
                    &mut self.sockets,
                );
            }
            None => {
                self.iface.poll(now, &mut self.device, &mut self.sockets);
            }
        }
        for service in services.iter_mut() {
            service.poll(&mut self.sockets, now);
        }
        let backlog_delay = self.backlog.as_ref().and_then(Backlog::poll_delay);
        let stack_delay = sooner(self.iface.poll_delay(now, &self.sockets), backlog_delay);
        let service_delay = services
            .iter()
            .filter_map(|service| service.poll_at(&self.sockets))
            .min()
            .map(|at| until(now, at));
        sooner(stack_delay, service_delay)
    }

    /// Sleeps until a frame arrives or `delay` passed (`None`: no limit).
    pub fn wait(&self, delay: Option<Duration>) -> Result<(), RunError> {
        if delay == Some(Duration::ZERO) {
            return Ok(());
        }
        self.device.tap().wait(delay).map_err(RunError::Wait)
    }

    /// Serves until `stop` is set, then closes the TCP connections gracefully (see
    /// [`TapRunner::shutdown`]) and returns how that went.
    ///
    /// Between rounds it sleeps until the next frame, the next smoltcp timer or the
    /// next [`Service::poll_at`], but never longer than [`TapConfig::stop_check`], so
    /// an idle server costs next to no CPU and still notices `stop` (set from a Ctrl-C
    /// handler, say) soon.
    pub fn run(
        &mut self,
        services: &mut [&mut dyn Service],
        stop: &AtomicBool,
    ) -> Result<StopReport, RunError> {
        while !stop.load(Ordering::Relaxed) {
            let delay = self.poll(services);
            self.wait(sooner(delay, Some(self.stop_check)))?;
        }
        info!("tap {}: stopping", self.device.tap().name());
        self.shutdown()
    }

    /// Closes every TCP socket and keeps the stack running (without the services,
    /// which would only open them again) until all of them are closed or
    /// [`TapConfig::close_grace`] passed; then resets what is still open.
    pub fn shutdown(&mut self) -> Result<StopReport, RunError> {
        let start = since(self.started);
        let deadline = later(start, self.close_grace);
        let mut connected = 0usize;
        for (_, socket) in self.sockets.iter_mut() {
            if let Socket::Tcp(tcp) = socket {
                if !is_done(tcp.state()) && tcp.state() != tcp::State::Listen {
                    connected = connected.saturating_add(1);
                }
                tcp.close();
            }
        }
        let aborted = loop {
            let now = since(self.started);
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            let open = self.open_tcp_sockets();
            if open == 0 {
                break 0;
            }
            if now >= deadline {
                warn!(
                    "tap {}: {open} connection(s) still open after {}; resetting",
                    self.device.tap().name(),
                    self.close_grace
                );
                for (_, socket) in self.sockets.iter_mut() {
                    if let Socket::Tcp(tcp) = socket
                        && !is_done(tcp.state())
                    {
                        tcp.abort();
                    }
                }
                // One more round sends the resets.
                self.iface.poll(now, &mut self.device, &mut self.sockets);
                break open;
            }
            let delay = sooner(
                self.iface.poll_delay(now, &self.sockets),
                Some(until(now, deadline)),
            );
            self.wait(delay)?;
        };
        let report = StopReport {
            closed: connected.saturating_sub(aborted),
            aborted,
        };
        debug!("tap {}: {report}", self.device.tap().name());
        Ok(report)
    }

    fn open_tcp_sockets(&self) -> usize {
        self.sockets
            .iter()
            .filter(|(_, socket)| matches!(socket, Socket::Tcp(tcp) if !is_done(tcp.state())))
            .count()
    }
}

/// Refuses what smoltcp's `Interface` would panic on: a non-unicast hardware or IP
/// address.
fn validate(config: &TapConfig) -> Result<(), SetupError> {
    if !config.hardware_addr.is_unicast() {
        return Err(SetupError::HardwareAddressNotUnicast);
    }
    let addresses = config
        .ipv4
        .map(IpCidr::Ipv4)
        .into_iter()
        .chain(config.ipv6.map(IpCidr::Ipv6));
    for cidr in addresses {
        if !cidr.address().is_unicast() {
            return Err(SetupError::AddressNotUnicast(cidr.address()));
        }
    }
    Ok(())
}

/// A TCP socket that needs nothing more from us: closed, or in TIME-WAIT after both
/// sides sent their FIN.
fn is_done(state: tcp::State) -> bool {
    matches!(state, tcp::State::Closed | tcp::State::TimeWait)
}

/// The time passed since `started`, as the stack's `Instant` (which starts at
/// zero with the runner).
fn since(started: std::time::Instant) -> Instant {
    Instant::from_micros(i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sooner_treats_none_as_no_limit() {
        let short = Some(Duration::from_millis(5));
        let long = Some(Duration::from_millis(50));
        assert_eq!(sooner(short, long), short);
        assert_eq!(sooner(long, short), short);
        assert_eq!(sooner(None, long), long);
        assert_eq!(sooner(short, None), short);
        assert_eq!(sooner::<Duration>(None, None), None);
    }

    #[test]
    fn until_a_past_instant_is_zero() {
        let now = Instant::from_millis(1_000);
        assert_eq!(until(now, Instant::from_millis(400)), Duration::ZERO);
        assert_eq!(
            until(now, Instant::from_millis(1_250)),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn the_stack_s_time_is_the_monotonic_clock_s_from_the_start() {
        // Not the wall clock (smoltcp's `Instant::now`, decades since 1970): the
        // time since the runner started, which no step of the system's time moves.
        let started = std::time::Instant::now();
        let now = since(started);
        assert!(
            now >= Instant::ZERO && now < Instant::from_secs(60),
            "{now}"
        );
        let earlier = std::time::Instant::now()
            .checked_sub(std::time::Duration::from_secs(5))
            .unwrap_or(started);
        assert!(since(earlier) >= since(started));
    }

    #[test]
    fn later_saturates_instead_of_overflowing() {
        let end = Instant::from_micros(i64::MAX - 1);
        assert_eq!(
            later(end, Duration::from_secs(10)),
            Instant::from_micros(i64::MAX)
        );
    }

    #[test]
    fn default_config_matches_tap_setup_script() {
        let config = TapConfig::default();
        assert_eq!(config.ipv4.unwrap().to_string(), "192.168.69.1/24");
        assert_eq!(config.ipv6.unwrap().to_string(), "fdaa::1/64");
        assert_eq!(config.ipv4_gateway.unwrap().to_string(), "192.168.69.100");
        assert_eq!(config.ipv6_gateway.unwrap().to_string(), "fdaa::100");
    }

    #[test]
    fn addresses_smoltcp_would_panic_on_are_refused() {
        assert!(validate(&TapConfig::DEFAULT).is_ok());
        let multicast_mac = TapConfig {
            hardware_addr: EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]),
            ..TapConfig::DEFAULT
        };
        assert!(matches!(
            validate(&multicast_mac),
            Err(SetupError::HardwareAddressNotUnicast)
        ));
        let multicast_ipv4 = TapConfig {
            ipv4: Some(Ipv4Cidr::new(Ipv4Address::new(224, 0, 0, 1), 24)),
            ..TapConfig::DEFAULT
        };
        assert!(matches!(
            validate(&multicast_ipv4),
            Err(SetupError::AddressNotUnicast(_))
        ));
        let multicast_ipv6 = TapConfig {
            ipv6: Some(Ipv6Cidr::new(
                Ipv6Address::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
                64,
            )),
            ..TapConfig::DEFAULT
        };
        assert!(matches!(
            validate(&multicast_ipv6),
            Err(SetupError::AddressNotUnicast(_))
        ));
    }
}
