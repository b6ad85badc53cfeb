//! Where segments, datagrams and buffer samples come from on smoltcp: a
//! packet-capture sink that reads each frame's TCP or UDP header, and a look at
//! a socket's buffers.

use smoltcp::phy::{PcapLinkType, PcapSink};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader,
    Ipv6Packet, TcpOption, TcpPacket, UdpPacket,
};

use super::{Conn, Datagram, Event, Flags, Levels, Record, Segment, TraceSink};
use crate::runner::sim::NoCapture;

/// A pcap capture into any `std::io::Write` (a `BufWriter<File>`) that never
/// panics. smoltcp's own sink for `io::Write` panics on a failed write or
/// flush, a full disk; this one stops capturing at the first error and keeps
/// it, for [`PcapFile::failure`] to tell once the sink has moved into a
/// device (`PcapWriter`) or a `SimNet`. The run goes on uncaptured.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct PcapFile<W> {
    out: Option<W>,
    failure: CaptureFailure,
}

/// Where a [`PcapFile`]'s first write error is found, shared with the file.
#[cfg(feature = "std")]
#[derive(Clone, Debug, Default)]
pub struct CaptureFailure(std::rc::Rc<core::cell::RefCell<Option<std::io::Error>>>);

#[cfg(feature = "std")]
impl CaptureFailure {
    /// The first write or flush error of the capture, if there was one (taken:
    /// a second call gives `None`).
    pub fn take(&self) -> Option<std::io::Error> {
        self.0
            .try_borrow_mut()
            .ok()
            .and_then(|mut error| error.take())
    }
}

#[cfg(feature = "std")]
impl<W: std::io::Write> PcapFile<W> {
    /// A capture into `out`.
    pub fn new(out: W) -> Self {
        Self {
            out: Some(out),
            failure: CaptureFailure::default(),
        }
    }

    /// Where the first write error will be found, once there is one.
    pub fn failure(&self) -> CaptureFailure {
        self.failure.clone()
    }

    /// Whether frames are still being written (no write has failed).
    pub const fn is_writing(&self) -> bool {
        self.out.is_some()
    }

    fn attempt(&mut self, op: impl FnOnce(&mut W) -> std::io::Result<()>) {
        if let Some(out) = &mut self.out
            && let Err(error) = op(out)
        {
            crate::macros::net_warn!("capture stopped at a failed write");
            self.out = None;
            if let Ok(mut first) = self.failure.0.try_borrow_mut() {
                *first = Some(error);
            }
        }
    }
}

#[cfg(feature = "std")]
impl<W: std::io::Write> PcapSink for PcapFile<W> {
    fn write(&mut self, data: &[u8]) {
        self.attempt(|out| out.write_all(data));
    }

    /// A record's header, its time clamped to what pcap can say (1970 to
    /// 2106: whole seconds and the microseconds past them, both unsigned 32
    /// bits) and its length to `u32::MAX`.
    fn packet_header(&mut self, timestamp: Instant, length: usize) {
        let micros = timestamp.total_micros().max(0);
        let (secs, usecs) = match u32::try_from(micros.div_euclid(1_000_000)) {
            Ok(secs) => (
                secs,
                u32::try_from(micros.rem_euclid(1_000_000)).unwrap_or(0),
            ),
            Err(_) => (u32::MAX, 999_999),
        };
        let original = u32::try_from(length).unwrap_or(u32::MAX);
        self.write_u32(secs);
        self.write_u32(usecs);
        self.write_u32(self.max_packet_size().min(original));
        self.write_u32(original);
    }

    fn flush(&mut self) {
        self.attempt(|out| out.flush());
    }
}

/// A packet-capture sink that records every TCP segment and UDP datagram of the
/// Ethernet frames it is shown into a [`TraceSink`], and passes each frame on to
/// another capture (`NoCapture` for none).
///
/// Both runners show every frame to their capture: the simulated link each frame
/// put on the wire (`SimNet::with_pcap`), the TAP runner each frame sent and
/// received (smoltcp's `PcapWriter` with `PcapMode::Both`). A frame that is not
/// TCP or UDP over IPv4 or IPv6, or is cut short, is passed on and not recorded; when
/// the trace is off ([`TraceSink::enabled`]) no frame is even parsed.
///
/// A record's time is when the capture saw the frame: on the simulated link, when
/// it was sent, so a segment or datagram lost on the way is recorded too.
#[derive(Debug)]
pub struct SegmentCapture<S, P = NoCapture> {
    trace: S,
    inner: P,
}

impl<S: TraceSink> SegmentCapture<S> {
    /// Records segments and datagrams into `trace`; the frames go nowhere else.
    pub const fn new(trace: S) -> Self {
        Self {
            trace,
            inner: NoCapture,
        }
    }
}

impl<S: TraceSink, P: PcapSink> SegmentCapture<S, P> {
    /// Records segments and datagrams into `trace` and passes every frame on to `inner` (a
    /// pcap file, say).
    pub const fn with_capture(trace: S, inner: P) -> Self {
        Self { trace, inner }
    }

    /// The trace.
    pub const fn trace(&self) -> &S {
        &self.trace
    }

    /// The trace, to record more into it or drain it.
    pub const fn trace_mut(&mut self) -> &mut S {
        &mut self.trace
    }

    /// The trace and the inner capture.
    pub fn into_parts(self) -> (S, P) {
        (self.trace, self.inner)
    }
}

impl<S: TraceSink, P: PcapSink> PcapSink for SegmentCapture<S, P> {
    fn write(&mut self, data: &[u8]) {
        self.inner.write(data);
    }

    fn flush(&mut self) {
        self.inner.flush();
    }

    fn global_header(&mut self, link_type: PcapLinkType) {
        self.inner.global_header(link_type);
    }

    fn packet_header(&mut self, timestamp: Instant, length: usize) {
        self.inner.packet_header(timestamp, length);
    }

    fn packet(&mut self, timestamp: Instant, packet: &[u8]) {
        if self.trace.enabled()
            && let Some(event) = parse(packet)
        {
            self.trace.record(Record::new(timestamp.into(), event));
        }
        self.inner.packet(timestamp, packet);
    }
}

/// The TCP segment or UDP datagram in an Ethernet frame, if there is a whole one.
pub(crate) fn parse(frame: &[u8]) -> Option<Event> {
    let (protocol, payload, fragment) = transport(frame)?;
    match (protocol, payload) {
        // The first fragment of a segment holds only its start, and nothing in
        // it says how long the segment is: not recorded.
        (IpProtocol::Tcp, _) if fragment => None,
        (IpProtocol::Tcp, tcp) => parse_tcp(tcp).map(Event::Segment),
        (IpProtocol::Udp, udp) => {
            if udp.len() < 8 {
                return None;
            }
            // The header's length field is the whole datagram's: the first
            // fragment of one holds its start, the rest is in later fragments.
            let packet = UdpPacket::new_unchecked(udp);
            let len = usize::from(packet.len()).checked_sub(8)?;
            if len > udp.len().saturating_sub(8) && !fragment {
                return None;
            }
            Some(Event::Datagram(Datagram {
                conn: Conn::new(packet.src_port(), packet.dst_port()),
                len: u16::try_from(len).unwrap_or(u16::MAX),
            }))
        }
        _ => None,
    }
}

/// The transport protocol and its bytes in an Ethernet frame (past IPv6's
/// extension headers): the first fragment's, or the whole packet's; and
/// whether more fragments follow.
fn transport(frame: &[u8]) -> Option<(IpProtocol, &[u8], bool)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    match ethernet.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
            // A fragment after the first carries no transport header.
            if ip.frag_offset() != 0 {
                return None;
            }
            Some((ip.next_header(), ip.payload(), ip.more_frags()))
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(ethernet.payload()).ok()?;
            let (mut next, mut rest, mut more) = (ip.next_header(), ip.payload(), false);
            // Past the extension headers to the transport header.
            while matches!(
                next,
                IpProtocol::HopByHop
                    | IpProtocol::Ipv6Route
                    | IpProtocol::Ipv6Opts
                    | IpProtocol::Ipv6Frag
            ) {
                let (after, len) = if next == IpProtocol::Ipv6Frag {
                    // 8 bytes: the next header, a reserved byte (not a
                    // length: RFC 8200 has it ignored), the fragment's fields.
                    let fragment = Ipv6FragmentHeader::new_checked(rest.get(2..8)?).ok()?;
                    if fragment.frag_offset() != 0 {
                        return None;
                    }
                    more = fragment.more_frags();
                    (IpProtocol::from(*rest.first()?), 8)
                } else {
                    let header = Ipv6ExtHeader::new_checked(rest).ok()?;
                    // Its length counts 8-byte units after the first 8 bytes.
                    let len = usize::from(header.header_len())
                        .saturating_add(1)
                        .saturating_mul(8);
                    (header.next_header(), len)
                };
                next = after;
                rest = rest.get(len..)?;
            }
            Some((next, rest, more))
        }
        _ => None,
    }
}

fn parse_tcp(tcp: &[u8]) -> Option<Segment> {
    let packet = TcpPacket::new_checked(tcp).ok()?;
    let flag = |set: bool, flag: Flags| if set { flag } else { Flags::default() };
    let flags = flag(packet.fin(), Flags::FIN)
        .with(flag(packet.syn(), Flags::SYN))
        .with(flag(packet.rst(), Flags::RST))
        .with(flag(packet.psh(), Flags::PSH))
        .with(flag(packet.ack(), Flags::ACK));
    let window_scale = if packet.syn() {
        window_scale(packet.options())
    } else {
        None
    };
    Some(Segment {
        conn: Conn::new(packet.src_port(), packet.dst_port()),
        seq: packet.seq_number().0.cast_unsigned(),
        ack: packet.ack_number().0.cast_unsigned(),
        len: u16::try_from(packet.payload().len()).unwrap_or(u16::MAX),
        window: packet.window_len(),
        window_scale,
        flags,
    })
}

/// The window scale option among a SYN's options.
fn window_scale(mut options: &[u8]) -> Option<u8> {
    while !options.is_empty() {
        let (rest, option) = TcpOption::parse(options).ok()?;
        match option {
            TcpOption::WindowScale(scale) => return Some(scale),
            TcpOption::EndOfList => return None,
            _ => options = rest,
        }
    }
    None
}

/// Records how full `socket`'s buffers are at `now`, if it has a connection and
/// the trace is on.
pub fn sample(socket: &tcp::Socket<'_>, now: Instant, trace: &mut impl TraceSink) {
    if !trace.enabled() {
        return;
    }
    let levels = levels(socket);
    if let Some(conn) = levels.conn {
        trace.record(Record::new(now.into(), Event::Buffers(levels.of(conn))));
    }
}

/// How full `socket`'s buffers are.
pub(crate) fn levels(socket: &tcp::Socket<'_>) -> Levels {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let conn = match (socket.local_endpoint(), socket.remote_endpoint()) {
        (Some(local), Some(remote)) => Some(Conn::new(local.port, remote.port)),
        _ => None,
    };
    Levels {
        conn,
        send_queued: size(socket.send_queue()),
        send_capacity: size(socket.send_capacity()),
        recv_queued: size(socket.recv_queue()),
        recv_capacity: size(socket.recv_capacity()),
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetAddress, EthernetRepr, IpAddress, Ipv4Address, Ipv4Repr, UdpRepr};

    use super::*;

    /// An Ethernet frame with an IPv4 packet carrying `payload` as UDP from port
    /// 49152 to 7.
    fn udp_frame(payload: &[u8]) -> std::vec::Vec<u8> {
        let (src, dst) = (Ipv4Address::new(10, 0, 0, 2), Ipv4Address::new(10, 0, 0, 1));
        let udp = UdpRepr {
            src_port: 49152,
            dst_port: 7,
        };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut frame = std::vec![0u8; ethernet.buffer_len() + ip.buffer_len() + ip.payload_len];
        let caps = ChecksumCapabilities::default();
        let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
        ethernet.emit(&mut eth);
        let mut packet = Ipv4Packet::new_unchecked(eth.payload_mut());
        ip.emit(&mut packet, &caps);
        let mut datagram = UdpPacket::new_unchecked(packet.payload_mut());
        udp.emit(
            &mut datagram,
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            payload.len(),
            |buf| buf.copy_from_slice(payload),
            &caps,
        );
        frame
    }

    #[test]
    fn a_udp_frame_is_a_datagram_and_a_cut_one_is_nothing() {
        let frame = udp_frame(b"hello");
        let expected = Event::Datagram(Datagram {
            conn: Conn::new(49152, 7),
            len: 5,
        });
        assert_eq!(parse(&frame), Some(expected));
        for cut in 0..frame.len() {
            assert_eq!(parse(&frame[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn the_capture_records_datagrams_only_when_its_trace_is_on() {
        let frame = udp_frame(&[0u8; 512]);
        let mut on = SegmentCapture::new(std::vec::Vec::new());
        on.packet(Instant::from_millis(3), &frame);
        let records = on.into_parts().0;
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].to_string(), "3000 49152>7 datagram len 512");
        let mut off = SegmentCapture::new(());
        off.packet(Instant::from_millis(3), &frame);
    }

    /// A writer that takes `room` bytes, then fails as a full disk does.
    #[cfg(feature = "std")]
    struct Disk {
        kept: Vec<u8>,
        room: usize,
    }

    #[cfg(feature = "std")]
    impl std::io::Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.room - self.kept.len());
            if n == 0 && !buf.is_empty() {
                return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
            }
            self.kept.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_capture_whose_disk_fills_stops_and_says_why_without_a_panic() {
        let mut file = PcapFile::new(Disk {
            kept: Vec::new(),
            room: 100,
        });
        let failure = file.failure();
        file.global_header(PcapLinkType::Ethernet);
        for i in 0..10 {
            file.packet(Instant::from_millis(i), &[0u8; 60]);
        }
        assert!(!file.is_writing());
        let error = failure.take().expect("the write error");
        assert_eq!(error.kind(), std::io::ErrorKind::StorageFull);
        assert!(failure.take().is_none(), "taken once");
        // A file that never filled has nothing to say.
        let mut roomy = PcapFile::new(Vec::new());
        roomy.global_header(PcapLinkType::Ethernet);
        roomy.packet(Instant::ZERO, &[0u8; 60]);
        assert!(roomy.is_writing() && roomy.failure().take().is_none());
    }

    #[cfg(feature = "std")]
    #[test]
    fn a_records_time_is_clamped_to_what_pcap_can_say() {
        // (time, the record's seconds and microseconds)
        let cases = [
            (Instant::from_micros(1_500_001), (1, 500_001)),
            (Instant::from_micros(-1), (0, 0)),
            (Instant::from_micros(-1_500_000), (0, 0)),
            (Instant::from_micros(i64::MIN), (0, 0)),
            // The last second pcap can say, and past it.
            (
                Instant::from_micros(i64::from(u32::MAX) * 1_000_000 + 5),
                (u32::MAX, 5),
            ),
            (
                Instant::from_micros((1i64 << 32) * 1_000_000 + 5_000_000),
                (u32::MAX, 999_999),
            ),
            (Instant::from_micros(i64::MAX), (u32::MAX, 999_999)),
        ];
        for (at, expected) in cases {
            let mut file = PcapFile::new(Vec::new());
            file.global_header(PcapLinkType::Ethernet);
            file.packet(at, &[0u8; 60]);
            let bytes = file.out.take().unwrap();
            let word = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
            assert_eq!((word(24), word(28)), expected, "{at}");
            assert_eq!((word(32), word(36)), (60, 60));
        }
    }
}

/// Transport headers behind IPv6 extension headers, and fragments.
#[cfg(test)]
mod headers_and_fragments {
    use super::*;

    fn ethernet(ethertype: [u8; 2], payload: &[u8]) -> std::vec::Vec<u8> {
        let mut frame = std::vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        frame.extend_from_slice(&ethertype);
        frame.extend_from_slice(payload);
        frame
    }

    /// An Ethernet frame with an IPv6 packet from fd00::2 to fd00::1: its
    /// first header `next`, then `headers` (extension headers and the
    /// transport's) one after the other.
    fn ipv6(next: u8, headers: &[&[u8]]) -> std::vec::Vec<u8> {
        let payload = headers.concat();
        let mut ip = std::vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        ip.extend_from_slice(&[next, 64]);
        ip.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&payload);
        ethernet([0x86, 0xdd], &ip)
    }

    /// An Ethernet frame with the first fragment of an IPv4 packet (id 1, more
    /// fragments) from 10.0.0.2 to 10.0.0.1 carrying `protocol`'s `payload`.
    fn ipv4_first_fragment(protocol: u8, payload: &[u8]) -> std::vec::Vec<u8> {
        let mut ip = std::vec![0x45, 0];
        ip.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x20, 0x00, 64, protocol, 0, 0]);
        ip.extend_from_slice(&[10, 0, 0, 2, 10, 0, 0, 1]);
        ip.extend_from_slice(payload);
        ethernet([0x08, 0x00], &ip)
    }

    /// A TCP header (20 bytes, ACK) from 49152 to 7 and `payload`.
    fn tcp(payload: &[u8]) -> std::vec::Vec<u8> {
        let mut t = std::vec![
            0xc0, 0x00, 0x00, 0x07, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x10, 0x10, 0x00, 0, 0, 0, 0
        ];
        t.extend_from_slice(payload);
        t
    }

    #[test]
    fn a_tcp_segment_behind_an_ipv6_hop_by_hop_header_is_recorded() {
        // Hop-by-Hop options (next: TCP), 8 bytes: next header, length 0, PadN of 4... (6 bytes of padding).
        let hbh = [6u8, 0, 1, 4, 0, 0, 0, 0];
        let frame = ipv6(0, &[&hbh, &tcp(b"hello")]);
        let event = parse(&frame);
        assert!(
            matches!(event, Some(Event::Segment(s)) if s.len == 5 && s.conn == Conn::new(49152, 7)),
            "{event:?}"
        );
    }

    #[test]
    fn the_first_fragment_of_a_tcp_segment_is_not_recorded() {
        // The TCP header and the first 1000 bytes of a longer payload (more
        // fragments follow): the segment's length is not in it.
        assert_eq!(parse(&ipv4_first_fragment(6, &tcp(&[0u8; 1000]))), None);
    }

    #[test]
    fn an_ipv6_fragment_header_is_eight_bytes_whatever_its_reserved_byte() {
        // An atomic fragment (offset 0, no more): RFC 8200 has the receiver
        // ignore the byte after the next header, which other headers use for
        // their length.
        let mut udp = std::vec![0xc0, 0x00, 0x00, 0x07, 0, 13, 0, 0];
        udp.extend_from_slice(b"hello");
        for reserved in [0u8, 1, 255] {
            let fragment = [17u8, reserved, 0, 0, 0, 0, 0, 9];
            let expected = Event::Datagram(Datagram {
                conn: Conn::new(49152, 7),
                len: 5,
            });
            assert_eq!(
                parse(&ipv6(44, &[&fragment, &udp])),
                Some(expected),
                "reserved byte {reserved}"
            );
        }
    }

    #[test]
    fn the_first_fragment_of_a_udp_datagram_is_recorded() {
        // A 3000-byte UDP datagram from 49152 to 7; its first fragment carries
        // the UDP header and 1472 bytes of payload (more fragments follow).
        let mut udp = std::vec![0xc0, 0x00, 0x00, 0x07];
        udp.extend_from_slice(&(8u16 + 3000).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(&[0u8; 1472]);
        assert_eq!(
            parse(&ipv4_first_fragment(17, &udp)),
            Some(Event::Datagram(Datagram {
                conn: Conn::new(49152, 7),
                len: 3000
            }))
        );
    }
}

/// IPv4 and IPv6 frames of random bytes, their headers' chosen fields set.
#[cfg(test)]
mod noise {
    #[test]
    fn no_frame_of_noise_panics_the_parser() {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300_000 {
            let len = (next() % 140) as usize;
            let mut f: std::vec::Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if f.len() >= 14 {
                let v6 = next() & 1 == 0;
                f[12..14].copy_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
                if f.len() >= 20 {
                    if v6 {
                        f[14] = 0x60;
                        let pl = (len.saturating_sub(54) as u16).to_be_bytes();
                        if f.len() >= 21 {
                            f[18] = pl[0];
                            f[19] = pl[1];
                        }
                        if f.len() > 20 {
                            f[20] = [0u8, 6, 17, 43, 44, 60][(next() % 6) as usize];
                        }
                    } else {
                        f[14] = 0x45;
                        let tl = ((len - 14) as u16).to_be_bytes();
                        f[16] = tl[0];
                        f[17] = tl[1];
                        f[18] = 0;
                        f[19] = 0;
                        if f.len() > 23 {
                            f[20] = 0;
                            f[21] = 0;
                            f[23] = if next() & 1 == 0 { 6 } else { 17 };
                        }
                    }
                }
            }
            let _ = super::parse(&f);
        }
    }
}
