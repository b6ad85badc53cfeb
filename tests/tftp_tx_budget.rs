//! TFTP on one smoltcp interface whose device sends only a few frames per poll,
//! as a network card with a short transmit queue does: the sockets' send rings
//! then drain in part between polls and wrap, and a datagram must wait for room,
//! never be lost and wait for a retransmission.

use smolsock::net::{Service, TftpClient, TftpServer};
use smolsock::store::{FileName, RamStore, Storage};
use smolsock::tftp::{ClientConfig, ClientGet, ClientPut, ServerConfig};
use smolsock::transfer::{SharedStore, SliceSink, UploadLease};
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Device, DeviceCapabilities, Loopback, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

type Store = RamStore<2, { 128 * 1024 }>;
const BUF: usize = 1432;

/// A loopback that hands out `budget` transmit tokens per poll.
struct Budgeted {
    inner: Loopback,
    budget: usize,
    left: usize,
}

impl Device for Budgeted {
    type RxToken<'a> = <Loopback as Device>::RxToken<'a>;
    type TxToken<'a> = <Loopback as Device>::TxToken<'a>;

    fn receive(&mut self, now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.inner.receive(now)
    }

    fn transmit(&mut self, now: Instant) -> Option<Self::TxToken<'_>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.inner.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A UDP socket whose send ring has `slots` packets and `payload` bytes.
fn socket(slots: usize, payload: usize) -> udp::Socket<'static> {
    let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * BUF]);
    let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; slots], vec![0; payload]);
    udp::Socket::new(rx, tx)
}

/// A get of a 100,000-byte file, blocks of `block`, `window` of them, the
/// server's slot sending through a ring of `slots` packets and `payload`
/// bytes, `budget` frames leaving per poll: the bytes got, and the server's
/// retransmissions.
fn get(slots: usize, payload: usize, block: u16, window: u16, budget: usize) -> (Vec<u8>, u64) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]));
    shared
        .with_store(|s| {
            let name = FileName::new("f").unwrap();
            let mut up = s.begin_upload(&name, data.len() as u64, false).unwrap();
            s.append(&mut up, &data).unwrap();
            s.commit(&up, smolsock::wire::crc32::crc32(&data)).unwrap();
        })
        .unwrap();
    let mut device = Budgeted {
        inner: Loopback::new(Medium::Ip),
        budget,
        left: budget,
    };
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .unwrap();
    });
    let mut storage: Vec<SocketStorage> = (0..3).map(|_| SocketStorage::EMPTY).collect();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let listen = sockets.add(socket(8, 8 * BUF));
    let slot = sockets.add(socket(slots, payload));
    let config = ServerConfig {
        max_block_size: 1400,
        max_window: 16,
        ..ServerConfig::DEFAULT
    };
    let mut server = TftpServer::<_, 1, BUF>::new(listen, [slot], &*shared, config);
    let mut into = vec![0u8; 100_000];
    let session = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig {
            block_size: Some(block),
            window: Some(window),
            ..ClientConfig::DEFAULT
        },
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let handle = sockets.add(socket(8, 8 * BUF));
    let server_at = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), 69);
    let mut client = TftpClient::<_, BUF>::new(handle, 50_000, server_at, session);
    let mut now = Instant::ZERO;
    // Bounded: a millisecond a turn, ten minutes of the stack's time at most.
    for _ in 0..600_000 {
        device.left = device.budget;
        iface.poll(now, &mut device, &mut sockets);
        server.poll(&mut sockets, now);
        client.poll(&mut sockets, now);
        if client.outcome().is_some() {
            break;
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(
        client.outcome(),
        Some(Ok(100_000)),
        "the get ends with the file"
    );
    let retransmits = server.stats().retransmits;
    (into, retransmits)
}

#[test]
fn a_datagram_the_send_ring_cannot_take_waits_instead_of_being_lost() {
    let expected: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    // Rings whose packet slots run out before their bytes, where a datagram that
    // must wrap needs a slot for the padding too; one to four frames a poll.
    for (slots, payload, block, window, budget) in [
        (8, 8 * BUF, 1000, 16, 1),
        (4, 4 * BUF, 600, 16, 2),
        (2, 3 * BUF, 600, 8, 1),
        (3, 6 * BUF, 1400, 16, 4),
    ] {
        let (got, retransmits) = get(slots, payload, block, window, budget);
        assert!(
            got == expected,
            "({slots}, {payload}, {block}, {window}, {budget}): bytes"
        );
        assert_eq!(
            retransmits, 0,
            "({slots}, {payload}, {block}, {window}, {budget}): the link loses nothing"
        );
    }
}

/// A put of `data`, the client's socket sending through a ring of `slots`
/// packets and `payload` bytes, `budget` frames a poll: what the server
/// stored, and the client's retransmissions.
fn put(data: &[u8], slots: usize, payload: usize, block: u16, budget: usize) -> (Vec<u8>, u64) {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]));
    let mut device = Budgeted {
        inner: Loopback::new(Medium::Ip),
        budget,
        left: budget,
    };
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .unwrap();
    });
    let mut storage: Vec<SocketStorage> = (0..3).map(|_| SocketStorage::EMPTY).collect();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let listen = sockets.add(socket(8, 8 * BUF));
    let slot = sockets.add(socket(8, 8 * BUF));
    let config = ServerConfig {
        max_block_size: 1400,
        max_window: 16,
        ..ServerConfig::DEFAULT
    };
    let mut server = TftpServer::<_, 1, BUF>::new(listen, [slot], &*shared, config);
    let session = ClientPut::new(
        FileName::new("f").unwrap(),
        ClientConfig {
            block_size: Some(block),
            window: Some(16),
            ..ClientConfig::DEFAULT
        },
        data,
        |_, _| {},
    );
    let handle = sockets.add(socket(slots, payload));
    let server_at = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), 69);
    let mut client = TftpClient::<_, BUF>::new(handle, 50_000, server_at, session);
    let mut now = Instant::ZERO;
    // Bounded: a millisecond a turn, ten minutes of the stack's time at most.
    for _ in 0..600_000 {
        device.left = device.budget;
        iface.poll(now, &mut device, &mut sockets);
        server.poll(&mut sockets, now);
        client.poll(&mut sockets, now);
        if client.outcome().is_some() && server.active() == 0 {
            break;
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(
        client.outcome(),
        Some(Ok(data.len() as u64)),
        "the put ends"
    );
    let retransmits = client.session().stats().retransmits;
    let stored = shared
        .with_store(|s| {
            let mut bytes = vec![0u8; data.len()];
            s.read(&FileName::new("f").unwrap(), 0, &mut bytes).unwrap();
            bytes
        })
        .unwrap();
    (stored, retransmits)
}

#[test]
fn a_client_s_datagram_its_send_ring_cannot_take_waits_too() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 + i / 509) as u8).collect();
    for (slots, payload, block, budget) in [(8, 8 * BUF, 1000, 1), (4, 4 * BUF, 600, 2)] {
        let (stored, retransmits) = put(&data, slots, payload, block, budget);
        assert!(
            stored == data,
            "({slots}, {payload}, {block}, {budget}): bytes"
        );
        assert_eq!(
            retransmits, 0,
            "({slots}, {payload}, {block}, {budget}): the link loses nothing"
        );
    }
}

/// A get whose server's device stops sending after `sending` polls, for a
/// minute, then sends again: whether the slot was freed meanwhile, and whether
/// a second get then completes.
fn stalled_get(sending: usize) -> (bool, Option<Result<u64, smolsock::tftp::TftpError>>) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]));
    shared
        .with_store(|s| {
            let name = FileName::new("f").unwrap();
            let mut up = s.begin_upload(&name, data.len() as u64, false).unwrap();
            s.append(&mut up, &data).unwrap();
            s.commit(&up, smolsock::wire::crc32::crc32(&data)).unwrap();
        })
        .unwrap();
    let mut device = Budgeted {
        inner: Loopback::new(Medium::Ip),
        budget: 1,
        left: 1,
    };
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
    iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
            .unwrap();
    });
    let mut storage: Vec<SocketStorage> = (0..4).map(|_| SocketStorage::EMPTY).collect();
    let mut sockets = SocketSet::new(&mut storage[..]);
    let listen = sockets.add(socket(8, 8 * BUF));
    let slot = sockets.add(socket(8, 8 * BUF));
    let config = ServerConfig {
        max_block_size: 1400,
        max_window: 16,
        ..ServerConfig::DEFAULT
    };
    let mut server = TftpServer::<_, 1, BUF>::new(listen, [slot], &*shared, config);
    let server_at = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), 69);
    let asked = ClientConfig {
        block_size: Some(1000),
        window: Some(16),
        ..ClientConfig::DEFAULT
    };
    let mut into = vec![0u8; 100_000];
    let first = ClientGet::new(
        FileName::new("f").unwrap(),
        asked,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let handle = sockets.add(socket(8, 8 * BUF));
    let mut client = TftpClient::<_, BUF>::new(handle, 50_000, server_at, first);
    let mut now = Instant::ZERO;
    let mut freed = false;
    // Sending, then a minute of a device that sends nothing, a millisecond a turn.
    for turn in 0..sending + 60_000 {
        device.left = if turn < sending { device.budget } else { 0 };
        iface.poll(now, &mut device, &mut sockets);
        server.poll(&mut sockets, now);
        client.poll(&mut sockets, now);
        freed |= turn >= sending && server.active() == 0;
        now += Duration::from_millis(1);
    }
    let mut again = vec![0u8; 100_000];
    let second = ClientGet::new(
        FileName::new("f").unwrap(),
        asked,
        SliceSink::new(&mut again),
        |_, _| {},
    );
    let handle = sockets.add(socket(8, 8 * BUF));
    let mut client = TftpClient::<_, BUF>::new(handle, 50_001, server_at, second);
    // Bounded: ten minutes of the stack's time at most.
    for _ in 0..600_000 {
        device.left = device.budget;
        iface.poll(now, &mut device, &mut sockets);
        server.poll(&mut sockets, now);
        client.poll(&mut sockets, now);
        if client.outcome().is_some() {
            break;
        }
        now += Duration::from_millis(1);
    }
    (freed, client.outcome())
}

#[test]
fn a_device_that_stops_sending_with_a_datagram_held_does_not_wedge_the_server() {
    for sending in [40, 41, 42, 43, 57, 90, 123] {
        let (freed, second) = stalled_get(sending);
        assert!(freed, "after {sending} polls: the slot was never freed");
        assert_eq!(
            second,
            Some(Ok(100_000)),
            "after {sending} polls: the next get"
        );
    }
}
