//! Where segments and buffer samples come from on smoltcp: a packet-capture sink
//! that reads each frame's TCP header, and a look at a socket's buffers.

use smoltcp::phy::{PcapLinkType, PcapSink};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet, TcpOption, TcpPacket,
};

use super::{Conn, Event, Flags, Levels, Record, Segment, TraceSink};
use crate::runner::sim::NoCapture;

/// A packet-capture sink that records every TCP segment of the Ethernet frames it
/// is shown into a [`TraceSink`], and passes each frame on to another capture
/// (`NoCapture` for none).
///
/// Both runners show every frame to their capture: the simulated link each frame
/// put on the wire (`SimNet::with_pcap`), the TAP runner each frame sent and
/// received (smoltcp's `PcapWriter` with `PcapMode::Both`). A frame that is not
/// TCP over IPv4 or IPv6, or is cut short, is passed on and not recorded; when
/// the trace is off ([`TraceSink::enabled`]) no frame is even parsed.
///
/// The segment's time is when the capture saw it: on the simulated link, when it
/// was sent, so a segment lost on the way is recorded too.
#[derive(Debug)]
pub struct SegmentCapture<S, P = NoCapture> {
    trace: S,
    inner: P,
}

impl<S: TraceSink> SegmentCapture<S> {
    /// Records segments into `trace`; the frames go nowhere else.
    pub const fn new(trace: S) -> Self {
        Self {
            trace,
            inner: NoCapture,
        }
    }
}

impl<S: TraceSink, P: PcapSink> SegmentCapture<S, P> {
    /// Records segments into `trace` and passes every frame on to `inner` (a
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
            && let Some(segment) = parse_segment(packet)
        {
            self.trace
                .record(Record::new(timestamp.into(), Event::Segment(segment)));
        }
        self.inner.packet(timestamp, packet);
    }
}

/// The TCP segment in an Ethernet frame, if there is a whole one.
pub(crate) fn parse_segment(frame: &[u8]) -> Option<Segment> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    let payload = ethernet.payload();
    let tcp = match ethernet.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(payload).ok()?;
            // A fragment after the first carries no TCP header.
            if ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 {
                return None;
            }
            ip.payload()
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(payload).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            ip.payload()
        }
        _ => return None,
    };
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
    let (Some(local), Some(remote)) = (socket.local_endpoint(), socket.remote_endpoint()) else {
        return;
    };
    let buffers = levels(socket).of(Conn::new(local.port, remote.port));
    trace.record(Record::new(now.into(), Event::Buffers(buffers)));
}

/// How full `socket`'s buffers are.
pub(crate) fn levels(socket: &tcp::Socket<'_>) -> Levels {
    let size = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Levels {
        send_queued: size(socket.send_queue()),
        send_capacity: size(socket.send_capacity()),
        recv_queued: size(socket.recv_queue()),
        recv_capacity: size(socket.recv_capacity()),
    }
}
