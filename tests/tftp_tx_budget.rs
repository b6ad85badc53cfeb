//! TFTP on one smoltcp interface whose device sends only a few frames per poll,
//! as a network card with a short transmit queue does: the sockets' send rings
//! then drain in part between polls and wrap, and a datagram must wait for room,
//! never be lost and wait for a retransmission.

use smolsock::net::{Service, TftpClient, TftpServer};
use smolsock::store::{FileName, RamStore, Storage};
use smolsock::tftp::{ClientConfig, ClientGet, ClientPut, ServerConfig, TftpError};
use smolsock::transfer::{SharedStore, SliceSink, UploadLease};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Loopback, Medium};
use smoltcp::socket::udp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpEndpoint};

type Store = RamStore<2, { 128 * 1024 }>;
type Shared = SharedStore<Store, [UploadLease; 1]>;
const BUF: usize = 1432;
/// Ten minutes of the stack's time, a millisecond a turn.
const TURNS: usize = 600_000;

/// A loopback that hands out `left` more transmit tokens (set before each poll).
struct Budgeted {
    inner: Loopback,
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

/// One interface on 127.0.0.1 over a [`Budgeted`] loopback, its sockets and
/// its clock.
struct Stack {
    device: Budgeted,
    iface: Interface,
    sockets: SocketSet<'static>,
    now: Instant,
}

impl Stack {
    fn new() -> Self {
        let mut device = Budgeted {
            inner: Loopback::new(Medium::Ip),
            left: 0,
        };
        let mut iface =
            Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::ZERO);
        iface.update_ip_addrs(|addrs| {
            addrs
                .push(IpCidr::new(IpAddress::v4(127, 0, 0, 1), 8))
                .unwrap();
        });
        Self {
            device,
            iface,
            sockets: SocketSet::new(vec![]),
            now: Instant::ZERO,
        }
    }

    /// A UDP socket whose send ring has `slots` packets and `payload` bytes.
    fn socket(&mut self, slots: usize, payload: usize) -> SocketHandle {
        let rx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * BUF]);
        let tx = udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; slots], vec![0; payload]);
        self.sockets.add(udp::Socket::new(rx, tx))
    }

    /// A server of one slot whose socket's send ring is `slots` and `payload`.
    fn server<'s>(&mut self, shared: &'s Shared, slots: usize, payload: usize) -> Server<'s> {
        let listen = self.socket(8, 8 * BUF);
        let slot = self.socket(slots, payload);
        let config = ServerConfig {
            max_block_size: 1400,
            max_window: 16,
            ..ServerConfig::DEFAULT
        };
        TftpServer::new(listen, [slot], shared, config)
    }

    /// Turns until `done` says so, ten minutes of the stack's time at most, the
    /// interface sending `budget(turn)` frames in each.
    fn run<C: Service>(
        &mut self,
        server: &mut Server<'_>,
        client: &mut C,
        budget: impl Fn(usize) -> usize,
        done: impl Fn(&Server<'_>, &C) -> bool,
    ) {
        for turn in 0..TURNS {
            self.turn(server, client, budget(turn));
            if done(server, client) {
                break;
            }
        }
    }

    /// One turn: the interface sends at most `budget` frames, the server and the
    /// client are polled, a millisecond passes.
    fn turn(&mut self, server: &mut Server<'_>, client: &mut dyn Service, budget: usize) {
        self.device.left = budget;
        self.iface
            .poll(self.now, &mut self.device, &mut self.sockets);
        server.poll(&mut self.sockets, self.now);
        client.poll(&mut self.sockets, self.now);
        self.now += Duration::from_millis(1);
    }
}

type Server<'s> = TftpServer<'s, Store, 1, BUF>;

/// The server's 127.0.0.1:69.
const SERVER_AT: IpEndpoint = IpEndpoint::new(IpAddress::v4(127, 0, 0, 1), 69);

/// 100,000 bytes, made with `seed`.
fn file(seed: u32) -> Vec<u8> {
    (0..100_000u32)
        .map(|i| (i * seed + i / 251) as u8)
        .collect()
}

/// A store holding `data` as "f".
fn store_with_f(data: &[u8]) -> Box<Shared> {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]));
    shared
        .with_store(|s| {
            let name = FileName::new("f").unwrap();
            let mut up = s.begin_upload(&name, data.len() as u64, false).unwrap();
            s.append(&mut up, data).unwrap();
            s.commit(&up, smolsock::wire::crc32::crc32(data)).unwrap();
        })
        .unwrap();
    shared
}

fn asked(block: u16, window: u16) -> ClientConfig {
    ClientConfig {
        block_size: Some(block),
        window: Some(window),
        ..ClientConfig::DEFAULT
    }
}

/// A get into a slice, reporting no progress.
type Get<'a> = ClientGet<SliceSink<'a>, fn(u64, Option<u64>)>;

/// A get of "f" into `into` from the client's port `port`, on the stack.
fn get_client<'a>(
    stack: &mut Stack,
    port: u16,
    config: ClientConfig,
    into: &'a mut [u8],
) -> TftpClient<Get<'a>, BUF> {
    let session: Get<'a> = ClientGet::new(
        FileName::new("f").unwrap(),
        config,
        SliceSink::new(into),
        |_, _| {},
    );
    TftpClient::new(stack.socket(8, 8 * BUF), port, SERVER_AT, session)
}

/// A get of a 100,000-byte file, blocks of `block`, `window` of them, the
/// server's slot sending through a ring of `slots` packets and `payload`
/// bytes, `budget` frames leaving per poll: the bytes got, and the server's
/// retransmissions.
fn get(slots: usize, payload: usize, block: u16, window: u16, budget: usize) -> (Vec<u8>, u64) {
    let shared = store_with_f(&file(7));
    let mut stack = Stack::new();
    let mut server = stack.server(&shared, slots, payload);
    let mut into = vec![0u8; 100_000];
    let mut client = get_client(&mut stack, 50_000, asked(block, window), &mut into);
    stack.run(
        &mut server,
        &mut client,
        |_| budget,
        |_, c| c.outcome().is_some(),
    );
    assert_eq!(
        client.outcome(),
        Some(Ok(100_000)),
        "the get ends with the file"
    );
    (into, server.stats().retransmits)
}

#[test]
fn a_datagram_the_send_ring_cannot_take_waits_instead_of_being_lost() {
    // Rings whose packet slots run out before their bytes, where a datagram that
    // must wrap needs a slot for the padding too; one to four frames a poll.
    for (slots, payload, block, window, budget) in [
        (8, 8 * BUF, 1000, 16, 1),
        (4, 4 * BUF, 600, 16, 2),
        (2, 3 * BUF, 600, 8, 1),
        (3, 6 * BUF, 1400, 16, 4),
    ] {
        let case = format!("({slots}, {payload}, {block}, {window}, {budget})");
        let (got, retransmits) = get(slots, payload, block, window, budget);
        assert!(got == file(7), "{case}: bytes");
        assert_eq!(retransmits, 0, "{case}: the link loses nothing");
    }
}

/// A put of `data`, the client's socket sending through a ring of `slots`
/// packets and `payload` bytes, `budget` frames a poll: what the server
/// stored, and the client's retransmissions.
fn put(data: &[u8], slots: usize, payload: usize, block: u16, budget: usize) -> (Vec<u8>, u64) {
    let shared = Box::new(SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]));
    let mut stack = Stack::new();
    let mut server = stack.server(&shared, 8, 8 * BUF);
    let session = ClientPut::new(
        FileName::new("f").unwrap(),
        asked(block, 16),
        data,
        |_, _| {},
    );
    let handle = stack.socket(slots, payload);
    let mut client = TftpClient::<_, BUF>::new(handle, 50_000, SERVER_AT, session);
    let done = |s: &Server<'_>, c: &TftpClient<_, BUF>| c.outcome().is_some() && s.active() == 0;
    stack.run(&mut server, &mut client, |_| budget, done);
    assert_eq!(
        client.outcome(),
        Some(Ok(data.len() as u64)),
        "the put ends"
    );
    let stored = shared
        .with_store(|s| {
            let mut bytes = vec![0u8; data.len()];
            s.read(&FileName::new("f").unwrap(), 0, &mut bytes).unwrap();
            bytes
        })
        .unwrap();
    (stored, client.session().stats().retransmits)
}

#[test]
fn a_client_s_datagram_its_send_ring_cannot_take_waits_too() {
    let data = file(13);
    for (slots, payload, block, budget) in [(8, 8 * BUF, 1000, 1), (4, 4 * BUF, 600, 2)] {
        let case = format!("({slots}, {payload}, {block}, {budget})");
        let (stored, retransmits) = put(&data, slots, payload, block, budget);
        assert!(stored == data, "{case}: bytes");
        assert_eq!(retransmits, 0, "{case}: the link loses nothing");
    }
}

/// A get whose server's device stops sending after `sending` polls, for a
/// minute, then sends again: whether the slot was freed meanwhile, and how a
/// second get then ends.
fn stalled_get(sending: usize) -> (bool, Option<Result<u64, TftpError>>) {
    let shared = store_with_f(&file(7));
    let mut stack = Stack::new();
    let mut server = stack.server(&shared, 8, 8 * BUF);
    let mut into = vec![0u8; 100_000];
    let mut client = get_client(&mut stack, 50_000, asked(1000, 16), &mut into);
    let mut freed = false;
    // Sending, then a minute of a device that sends nothing.
    for turn in 0..sending + 60_000 {
        stack.turn(&mut server, &mut client, usize::from(turn < sending));
        freed |= turn >= sending && server.active() == 0;
    }
    let mut again = vec![0u8; 100_000];
    let mut client = get_client(&mut stack, 50_001, asked(1000, 16), &mut again);
    stack.run(
        &mut server,
        &mut client,
        |_| 1,
        |_, c| c.outcome().is_some(),
    );
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

/// A get that asks for a 10 s timeout, whose server's device stops sending
/// after `sending` polls for `stall` more: the server's retransmissions.
fn get_with_stall(sending: usize, stall: usize) -> u64 {
    let shared = store_with_f(&file(7));
    let mut stack = Stack::new();
    let mut server = stack.server(&shared, 8, 8 * BUF);
    let mut into = vec![0u8; 100_000];
    let config = ClientConfig {
        timeout: smolsock::time::Duration::from_secs(10),
        send_timeout: true,
        ..asked(1000, 16)
    };
    let mut client = get_client(&mut stack, 50_000, config, &mut into);
    let budget = |turn| usize::from(turn < sending || turn >= sending + stall);
    stack.run(&mut server, &mut client, budget, |_, c| {
        c.outcome().is_some()
    });
    assert_eq!(
        client.outcome(),
        Some(Ok(100_000)),
        "the get ends with the file"
    );
    assert!(into == file(7));
    server.stats().retransmits
}

#[test]
fn a_kept_datagram_waits_for_the_timeout_granted_to_the_client() {
    // A 1.5 s stall, shorter than the 10 s granted: nothing is sent again.
    for sending in [30, 49, 68, 87, 106] {
        assert_eq!(
            get_with_stall(sending, 1_500),
            0,
            "stalled after {sending} polls"
        );
    }
}
