//! TFTP's async adapter end to end: `tftp::asynch::{Client, Server}` over an
//! in-memory datagram link between two hosts that loses datagrams (seeded, so a
//! failure repeats), on tokio with its clock paused: time moves only when every
//! task waits, straight to the next deadline, so retransmissions cost no wall
//! time and no test reads the wall clock. Every transfer ends by the sessions'
//! bounded tries.

mod tokio_clock;
use tokio_clock::TokioClock;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use smolsock::asynch::DatagramSocket;
use smolsock::store::{FileName, RamStore};
use smolsock::tftp::asynch::{Client, Server, TransferSocket};
use smolsock::tftp::{ClientConfig, ClientGet, ServerConfig, TftpStats};
use smolsock::transfer::{SharedStore, SliceSink, UploadLease};

/// A host and a port.
type Addr = (u8, u16);

/// Decides whether a datagram from `from` to `to` is lost.
type Drop = Box<dyn FnMut(Addr, Addr, &[u8]) -> bool>;

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<(Vec<u8>, Addr)>,
    waker: Option<Waker>,
}

/// The link: a mailbox per bound address, and what it loses.
struct Link {
    boxes: HashMap<Addr, Mailbox>,
    drop: Drop,
    sent: u64,
    lost: u64,
}

#[derive(Clone)]
struct Net(Rc<RefCell<Link>>);

impl Net {
    fn new(drop: Drop) -> Self {
        Self(Rc::new(RefCell::new(Link {
            boxes: HashMap::new(),
            drop,
            sent: 0,
            lost: 0,
        })))
    }

    /// Loses `percent` of all datagrams, chosen by a seeded generator.
    fn lossy(seed: u64, percent: u64) -> Self {
        let mut state = seed | 1;
        Self::new(Box::new(move |_, _, _| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 100 < percent
        }))
    }

    fn bind(&self, addr: Addr) -> Socket {
        self.0.borrow_mut().boxes.entry(addr).or_default();
        Socket {
            net: self.clone(),
            addr,
        }
    }

    /// The port host 1's transfer socket is bound to now (the server binds it
    /// to a port of its own for each transfer).
    fn transfer_port(&self) -> Addr {
        let link = self.0.borrow();
        let mut bound = link
            .boxes
            .keys()
            .filter(|a| a.0 == SERVER.0 && *a != &SERVER);
        *bound.next().expect("a transfer socket")
    }

    fn counts(&self) -> (u64, u64) {
        let link = self.0.borrow();
        (link.sent, link.lost)
    }
}

struct Socket {
    net: Net,
    addr: Addr,
}

impl DatagramSocket for Socket {
    type Addr = Addr;
    type Error = Infallible;

    async fn send_to(&mut self, datagram: &[u8], to: Addr) -> Result<(), Infallible> {
        let mut link = self.net.0.borrow_mut();
        link.sent += 1;
        if (link.drop)(self.addr, to, datagram) {
            link.lost += 1;
            return Ok(());
        }
        // To an address nobody bound: gone, as UDP to a closed port.
        if let Some(mailbox) = link.boxes.get_mut(&to) {
            mailbox.queue.push_back((datagram.to_vec(), self.addr));
            if let Some(waker) = mailbox.waker.take() {
                waker.wake();
            }
        }
        Ok(())
    }

    async fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, Addr), Infallible> {
        poll_fn(|cx| {
            let mut link = self.net.0.borrow_mut();
            let mailbox = link.boxes.entry(self.addr).or_default();
            match mailbox.queue.pop_front() {
                Some((datagram, from)) => {
                    let n = datagram.len().min(buf.len());
                    buf[..n].copy_from_slice(&datagram[..n]);
                    Poll::Ready(Ok((n, from)))
                }
                None => {
                    mailbox.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    fn same_host(a: &Addr, b: &Addr) -> bool {
        a.0 == b.0
    }
}

impl TransferSocket for Socket {
    fn rebind(&mut self, port: u16) -> bool {
        let mut link = self.net.0.borrow_mut();
        let to = (self.addr.0, port);
        if link.boxes.contains_key(&to) {
            return false;
        }
        // What waited on the old port goes with it.
        link.boxes.remove(&self.addr);
        link.boxes.insert(to, Mailbox::default());
        self.addr = to;
        true
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
}

type Store = RamStore<4, 65_536>;

/// Stores `data` as `name`, as a finished upload would.
fn stored<L: ?Sized>(shared: &SharedStore<Store, L>, name: &FileName, data: &[u8]) {
    shared
        .with_store(|s| {
            use smolsock::store::Storage;
            let mut upload = s.begin_upload(name, data.len() as u64, false).unwrap();
            s.append(&mut upload, data).unwrap();
            s.commit(&upload, smolsock::wire::crc32::crc32(data))
                .unwrap();
        })
        .unwrap();
}

const SERVER: Addr = (1, 69);
/// Where the transfer socket starts: the server binds it to a port of its own
/// for each transfer.
const TRANSFER_PORT: Addr = (1, 5000);
const CLIENT: Addr = (2, 6000);

struct Moved {
    put: Result<u64, smolsock::tftp::TftpError>,
    get: Result<u64, smolsock::tftp::TftpError>,
    got: Vec<u8>,
    client: TftpStats,
    server: TftpStats,
    retransmits: u64,
}

/// Puts `data` as "f" and gets it back over `net`, the server running beside
/// the client; the get dallies if `dally`.
async fn put_then_get(net: &Net, data: &[u8], config: ClientConfig, dally: bool) -> Moved {
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let server_config = ServerConfig {
        max_block_size: 1428,
        ..ServerConfig::DEFAULT
    };
    let mut server = Server::new(&shared, server_config);
    let (mut listen, mut port, mut socket) =
        (net.bind(SERVER), net.bind(TRANSFER_PORT), net.bind(CLIENT));
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram, mut buf) = (vec![0u8; 516], vec![0u8; 1433], vec![0u8; 1433]);
    let mut got = vec![0u8; data.len()];
    let name = FileName::new("f").unwrap();
    let client_side = async {
        let mut client = Client::new(&mut socket, SERVER, &mut buf).with_dally(dally);
        let put = client.put(&clock, name, config, data, |_, _| {}).await;
        let mut get = ClientGet::new(name, config, SliceSink::new(&mut got), |_, _| {});
        let outcome = client.run(&mut get, &clock).await;
        assert!(get.sink().is_complete() || outcome.is_err());
        let retransmits = get.stats().retransmits;
        (put, outcome, *client.stats(), retransmits)
    };
    let (put, get, client, retransmits) = tokio::select! {
        biased;
        moved = client_side => moved,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    // The client is gone; the server runs on alone for a while of virtual time,
    // to end whatever it still does.
    let alone = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), alone).await;
    assert!(!server.is_active());
    Moved {
        put,
        get,
        got,
        client,
        server: server.stats(),
        retransmits,
    }
}

#[tokio::test(start_paused = true)]
async fn a_put_and_a_get_over_a_lossy_link_move_every_byte_and_retransmit() {
    let configs = [
        ClientConfig::DEFAULT,
        ClientConfig {
            block_size: Some(1428),
            window: Some(4),
            ..ClientConfig::DEFAULT
        },
    ];
    let mut lost = 0;
    let mut retransmits = 0;
    for seed in 1..=6u64 {
        for config in configs {
            let data = pattern(20_000 + seed as usize * 100);
            let net = Net::lossy(seed, 10);
            let moved = put_then_get(&net, &data, config, true).await;
            assert_eq!(moved.put, Ok(data.len() as u64), "seed {seed}");
            assert_eq!(moved.get, Ok(data.len() as u64), "seed {seed}");
            assert!(moved.got == data, "seed {seed}: the bytes differ");
            // The get dallied: the server ended both transfers clean.
            assert_eq!(
                (moved.server.completed, moved.server.failed),
                (2, 0),
                "seed {seed}: {}",
                moved.server
            );
            assert_eq!(moved.client.wrong_tid, 0);
            lost += net.counts().1;
            retransmits += moved.server.retransmits + moved.retransmits;
        }
    }
    assert!(
        lost > 10 && retransmits > 0,
        "{lost} lost, {retransmits} sent again"
    );
}

/// Loses the first ACK of block `block` the client sends.
fn lose_first_ack(block: u16) -> Drop {
    let mut lost = false;
    Box::new(move |from, _, datagram| {
        let hit = from == CLIENT && datagram == [0, 4, (block >> 8) as u8, block as u8] && !lost;
        lost |= hit;
        hit
    })
}

#[tokio::test(start_paused = true)]
async fn a_dallying_get_acks_the_repeated_last_block_and_the_server_ends_clean() {
    // 1000 bytes: blocks 1 and 2; the get's final ACK is lost once.
    let data = pattern(1000);
    let net = Net::new(lose_first_ack(2));
    let moved = put_then_get(&net, &data, ClientConfig::DEFAULT, true).await;
    assert_eq!((moved.put, moved.get), (Ok(1000), Ok(1000)));
    assert!(moved.got == data);
    assert_eq!(net.counts().1, 1, "one datagram lost");
    assert_eq!(
        (moved.server.completed, moved.server.failed),
        (2, 0),
        "{}",
        moved.server
    );
    assert_eq!(moved.server.retransmits, 1, "the last block, once");

    // Without the dally the get returns at once, with the file; the server's
    // repeats find nobody and it counts the get as timed out.
    let net = Net::new(lose_first_ack(2));
    let moved = put_then_get(&net, &data, ClientConfig::DEFAULT, false).await;
    assert_eq!((moved.put, moved.get), (Ok(1000), Ok(1000)));
    assert!(moved.got == data);
    assert_eq!(
        (
            moved.server.completed,
            moved.server.failed,
            moved.server.timeouts
        ),
        (1, 1, 1),
        "{}",
        moved.server
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_during_a_transfer_is_told_busy_and_stray_datagrams_get_errors_5_and_4() {
    let net = Net::new(Box::new(|_, _, _| false));
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let data = pattern(40_000);
    let name = FileName::new("f").unwrap();
    stored(&shared, &name, &data);
    let mut server = Server::new(&shared, ServerConfig::DEFAULT);
    let (mut listen, mut port) = (net.bind(SERVER), net.bind(TRANSFER_PORT));
    let (mut socket, mut other) = (net.bind(CLIENT), net.bind((3, 7000)));
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram, mut buf) = (vec![0u8; 516], vec![0u8; 517], vec![0u8; 517]);
    let mut got = vec![0u8; data.len()];
    let done = std::cell::Cell::new(0u64);
    let get = async {
        let mut client = Client::new(&mut socket, SERVER, &mut buf);
        let sink = SliceSink::new(&mut got);
        client
            .get(&clock, name, ClientConfig::DEFAULT, sink, |n, _| {
                done.set(n)
            })
            .await
    };
    let intruder = async {
        // Once the get is under way: a request to port 69, then an ACK to the
        // transfer's port, from another host.
        // Bounded: a get that never gets there fails the test, not hangs it.
        for _ in 0..1_000_000 {
            if done.get() >= 10_000 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(done.get() >= 10_000, "the get never got under way");
        // Each answer within 10 s of (paused, virtual) time, or the test fails.
        let patience = std::time::Duration::from_secs(10);
        let mut answer = [0u8; 600];
        let rrq = b"\x00\x01f\x00octet\x00";
        other.send_to(rrq, SERVER).await.unwrap();
        let received = tokio::time::timeout(patience, other.recv_from(&mut answer));
        let (n, from) = received.await.expect("an answer from port 69").unwrap();
        let busy = (
            from,
            answer[..4].to_vec(),
            String::from_utf8_lossy(&answer[4..n]).into_owned(),
        );
        let transfer = net.transfer_port();
        other.send_to(&[0, 4, 0, 1], transfer).await.unwrap();
        let received = tokio::time::timeout(patience, other.recv_from(&mut answer));
        let (n, from) = received
            .await
            .expect("an answer from the transfer's port")
            .unwrap();
        let stray = (from == transfer, answer[..n.min(4)].to_vec());
        // An ACK to port 69 is no request: refused there, and no transfer.
        other.send_to(&[0, 4, 0, 1], SERVER).await.unwrap();
        let received = tokio::time::timeout(patience, other.recv_from(&mut answer));
        let (n, from) = received.await.expect("an answer from port 69").unwrap();
        (busy, stray, (from, answer[..n.min(4)].to_vec()))
    };
    let (outcome, (busy, stray, not_a_request)) = tokio::select! {
        both = async { tokio::join!(get, intruder) } => both,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    assert_eq!(outcome, Ok(data.len() as u64));
    assert!(got == data);
    assert_eq!((busy.0, busy.1), (SERVER, vec![0, 5, 0, 0]), "{}", busy.2);
    assert!(busy.2.contains("busy"), "{}", busy.2);
    assert_eq!(stray, (true, vec![0, 5, 0, 5]), "from the transfer's port");
    assert_eq!(not_a_request, (SERVER, vec![0, 5, 0, 4]));
    let stats = server.stats();
    assert_eq!(
        (stats.pool_full, stats.wrong_tid, stats.malformed),
        (1, 1, 1),
        "{stats}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_data_longer_than_a_block_is_refused_where_the_socket_cuts_it_to_the_buffer() {
    // This link's sockets cut a datagram to the buffer, as `std`'s and tokio's
    // do. The server's buffer is 1432 bytes, 4 + 1428: it grants blocks of 1427,
    // and its byte to spare shows that a DATA cut to the buffer was too long.
    let net = Net::new(Box::new(|_, _, _| false));
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let config = ServerConfig {
        max_block_size: 1428,
        ..ServerConfig::DEFAULT
    };
    let mut server = Server::new(&shared, config);
    let (mut listen, mut port, mut peer) =
        (net.bind(SERVER), net.bind(TRANSFER_PORT), net.bind(CLIENT));
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram) = (vec![0u8; 516], vec![0u8; 1432]);
    let uploader = async {
        let patience = std::time::Duration::from_secs(10);
        let mut answer = [0u8; 2000];
        peer.send_to(b"\x00\x02up\x00octet\x00blksize\x001428\x00", SERVER)
            .await
            .unwrap();
        let received = tokio::time::timeout(patience, peer.recv_from(&mut answer));
        let (n, from) = received.await.expect("an OACK").unwrap();
        let oack = (answer[..n].to_vec(), from);
        let mut data = vec![0, 3, 0, 1];
        data.extend_from_slice(&[7; 1500]);
        peer.send_to(&data, oack.1).await.unwrap();
        let received = tokio::time::timeout(patience, peer.recv_from(&mut answer));
        let (n, _) = received.await.expect("an answer to the DATA").unwrap();
        (oack, answer[..n.min(4)].to_vec())
    };
    let (oack, answer) = tokio::select! {
        answer = uploader => answer,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    assert_eq!(oack.0, b"\x00\x06blksize\x001427\x00");
    assert!(
        oack.1.0 == SERVER.0 && oack.1.1 >= 49152,
        "the OACK came from {:?}, not a transfer port of its own",
        oack.1
    );
    assert_eq!(answer, [0, 5, 0, 4], "ERROR 4, not an ACK of a cut block");
    let name = FileName::new("up").unwrap();
    let stored = shared.with_store(|s| smolsock::store::Storage::stat(s, &name).is_ok());
    assert_eq!(stored, Some(false), "nothing stored");
}

#[tokio::test(start_paused = true)]
async fn a_get_with_a_small_buffer_asks_for_the_blocks_it_has_room_for() {
    let net = Net::new(Box::new(|_, _, _| false));
    let (mut server, mut socket) = (net.bind(SERVER), net.bind(CLIENT));
    let clock = TokioClock(tokio::time::Instant::now());
    let name = FileName::new("f").unwrap();
    let mut got = vec![0u8; 16];
    // 4 + 512 bytes: room for a DATA of RFC 1350's blocks, none to spare.
    for (len, asked) in [(516usize, Some(511u16)), (517, None), (1000, None)] {
        let mut buf = vec![0u8; len];
        let get = async {
            let mut client = Client::new(&mut socket, SERVER, &mut buf);
            let sink = SliceSink::new(&mut got);
            client
                .get(&clock, name, ClientConfig::DEFAULT, sink, |_, _| {})
                .await
        };
        let rrq = async {
            let mut rrq = [0u8; 600];
            let (n, _) = server.recv_from(&mut rrq).await.unwrap();
            rrq[..n].to_vec()
        };
        let rrq = tokio::select! {
            outcome = get => panic!("the get ended before its request: {outcome:?}"),
            rrq = rrq => rrq,
        };
        match smolsock::tftp::packet::Packet::parse(&rrq) {
            Ok(smolsock::tftp::packet::Packet::Request { options, .. }) => {
                assert_eq!(options.block_size, asked, "a buffer of {len}");
            }
            other => panic!("{other:?}"),
        }
    }
    // No room for the smallest block: refused before anything is sent.
    let mut tiny = vec![0u8; 12];
    let mut client = Client::new(&mut socket, SERVER, &mut tiny);
    let sink = SliceSink::new(&mut got);
    let outcome = client
        .get(&clock, name, ClientConfig::DEFAULT, sink, |_, _| {})
        .await;
    assert_eq!(outcome, Err(smolsock::tftp::TftpError::BufferTooSmall));
}

#[tokio::test(start_paused = true)]
async fn a_server_with_a_516_byte_buffer_serves_plain_reads_and_asks_uploads_for_blksize() {
    // A read only receives ACKs: 4 + 512 bytes carry its blocks. An upload
    // needs the byte to spare, so a plain WRQ is told to ask for smaller ones.
    let net = Net::new(Box::new(|_, _, _| false));
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let data = pattern(600);
    let name = FileName::new("f").unwrap();
    stored(&shared, &name, &data);
    let mut server = Server::new(&shared, ServerConfig::DEFAULT);
    let (mut listen, mut port) = (net.bind(SERVER), net.bind(TRANSFER_PORT));
    let (mut reader, mut writer) = (net.bind(CLIENT), net.bind((3, 7000)));
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram) = (vec![0u8; 516], vec![0u8; 516]);
    let clients = async {
        let patience = std::time::Duration::from_secs(10);
        let mut answer = [0u8; 600];
        reader
            .send_to(b"\x00\x01f\x00octet\x00", SERVER)
            .await
            .unwrap();
        let received = tokio::time::timeout(patience, reader.recv_from(&mut answer));
        let (n, transfer) = received.await.expect("DATA 1").unwrap();
        let first = answer[..n].to_vec();
        // The read ends (ACK of the short last block) before the upload asks.
        reader.send_to(&[0, 4, 0, 1], transfer).await.unwrap();
        let received = tokio::time::timeout(patience, reader.recv_from(&mut answer));
        let (n, _) = received.await.expect("DATA 2").unwrap();
        assert_eq!(n, 4 + 88);
        reader.send_to(&[0, 4, 0, 2], transfer).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        writer
            .send_to(b"\x00\x02up\x00octet\x00", SERVER)
            .await
            .unwrap();
        let received = tokio::time::timeout(patience, writer.recv_from(&mut answer));
        let (n, _) = received.await.expect("an answer to the WRQ").unwrap();
        (first, answer[..n].to_vec())
    };
    let (first, refused) = tokio::select! {
        answers = clients => answers,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    assert_eq!(first.len(), 516);
    assert_eq!(
        (&first[..4], &first[4..]),
        (&[0, 3, 0, 1][..], &data[..512])
    );
    assert_eq!(&refused[..4], &[0, 5, 0, 0]);
    assert!(
        String::from_utf8_lossy(&refused).contains("blksize"),
        "{}",
        String::from_utf8_lossy(&refused)
    );
}

#[tokio::test(start_paused = true)]
async fn a_late_data_of_the_last_get_is_not_taken_for_the_next_file() {
    let net = Net::new(Box::new(|_, _, _| false));
    let (mut listen, mut old_port, mut new_port, mut socket) = (
        net.bind(SERVER),
        net.bind((1, 5000)),
        net.bind((1, 5001)),
        net.bind(CLIENT),
    );
    let clock = TokioClock(tokio::time::Instant::now());
    let mut buf = vec![0u8; 1000];
    let mut client = Client::new(&mut socket, SERVER, &mut buf);
    let mut got_a = vec![0u8; 64];
    let server_a = async {
        let mut b = [0u8; 600];
        listen.recv_from(&mut b).await.unwrap();
        old_port.send_to(b"\0\x03\0\x01AAAA", CLIENT).await.unwrap();
    };
    let (a, ()) = tokio::join!(
        client.get(
            &clock,
            FileName::new("a").unwrap(),
            ClientConfig::DEFAULT,
            SliceSink::new(&mut got_a),
            |_, _| {}
        ),
        server_a
    );
    assert_eq!(a, Ok(4));
    // The server missed the last ACK: its last DATA comes again, late.
    old_port.send_to(b"\0\x03\0\x01AAAA", CLIENT).await.unwrap();
    let mut got_b = vec![0u8; 64];
    let server_b = async {
        let mut b = [0u8; 600];
        listen.recv_from(&mut b).await.unwrap();
        new_port
            .send_to(b"\0\x03\0\x01BBBBBBBB", CLIENT)
            .await
            .unwrap();
    };
    let (b, ()) = tokio::join!(
        client.get(
            &clock,
            FileName::new("b").unwrap(),
            ClientConfig::DEFAULT,
            SliceSink::new(&mut got_b),
            |_, _| {}
        ),
        server_b
    );
    assert_eq!(b, Ok(8), "file b got {:?}", &got_b[..4]);
    assert_eq!(&got_b[..8], b"BBBBBBBB");
    assert_eq!(client.stats().wrong_tid, 1, "the late DATA was refused");
}

#[tokio::test(start_paused = true)]
async fn a_late_datagram_to_the_port_of_a_finished_transfer_is_answered_and_counted() {
    let net = Net::new(Box::new(|_, _, _| false));
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let data = pattern(3_000);
    let name = FileName::new("f").unwrap();
    stored(&shared, &name, &data);
    let mut server = Server::new(&shared, ServerConfig::DEFAULT);
    let (mut listen, mut port) = (net.bind(SERVER), net.bind(TRANSFER_PORT));
    let mut socket = net.bind(CLIENT);
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram, mut buf) = (vec![0u8; 516], vec![0u8; 517], vec![0u8; 517]);
    let mut got = vec![0u8; data.len()];
    let client_side = async {
        let mut client = Client::new(&mut socket, SERVER, &mut buf);
        let sink = SliceSink::new(&mut got);
        let outcome = client
            .get(&clock, name, ClientConfig::DEFAULT, sink, |_, _| {})
            .await;
        assert_eq!(outcome, Ok(data.len() as u64));
        // The transfer is over (a get does not dally by default, and the
        // server's last ACK came): its final ACK again, late.
        let transfer = net.transfer_port();
        socket.send_to(&[0, 4, 0, 6], transfer).await.unwrap();
        // Answered within 10 s of (paused, virtual) time, or the test fails.
        let mut answer = [0u8; 600];
        let patience = std::time::Duration::from_secs(10);
        let received = tokio::time::timeout(patience, socket.recv_from(&mut answer));
        let (n, from) = received.await.expect("an answer to the late ACK").unwrap();
        (from == transfer, answer[..n.min(4)].to_vec())
    };
    let late = tokio::select! {
        biased;
        late = client_side => late,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    assert_eq!(late, (true, vec![0, 5, 0, 5]), "ERROR 5 from the old port");
    let stats = server.stats();
    assert_eq!((stats.completed, stats.wrong_tid), (1, 1), "{stats}");
}

#[tokio::test(start_paused = true)]
async fn the_clients_refusal_of_a_late_data_is_not_answered_into_its_next_get() {
    // An ERROR is never answered (RFC 1350): the client's ERROR 5 to the old
    // port is counted by the server, not refused back, and so on for ever.
    let net = Net::new(Box::new(|_, _, _| false));
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let (a, b) = (FileName::new("a").unwrap(), FileName::new("b").unwrap());
    stored(&shared, &a, b"AAAA");
    stored(&shared, &b, b"BBBBBBBB");
    let mut server = Server::new(&shared, ServerConfig::DEFAULT);
    let (mut listen, mut port) = (net.bind(SERVER), net.bind(TRANSFER_PORT));
    let mut socket = net.bind(CLIENT);
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram, mut buf) = (vec![0u8; 516], vec![0u8; 517], vec![0u8; 517]);
    let (mut got_a, mut got_b) = (vec![0u8; 64], vec![0u8; 64]);
    let client_side = async {
        let mut client = Client::new(&mut socket, SERVER, &mut buf);
        let sink = SliceSink::new(&mut got_a);
        let first = client
            .get(&clock, a, ClientConfig::DEFAULT, sink, |_, _| {})
            .await;
        assert_eq!(first, Ok(4));
        // The server sent its last DATA again (the client's ACK was slow), and
        // took the ACK: the repeat reaches the client after its get returned.
        let old = net.transfer_port();
        net.bind(old)
            .send_to(b"\0\x03\0\x01AAAA", CLIENT)
            .await
            .unwrap();
        let sink = SliceSink::new(&mut got_b);
        let second = client
            .get(&clock, b, ClientConfig::DEFAULT, sink, |_, _| {})
            .await;
        (second, *client.stats())
    };
    let (second, client_stats) = tokio::select! {
        biased;
        done = client_side => done,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    let stats = server.stats();
    assert_eq!(second, Ok(8), "client {client_stats}, server {stats}");
    assert_eq!(&got_b[..8], b"BBBBBBBB");
    // One refusal each way: the client's of the late DATA, and the server's
    // count of the client's ERROR 5 at its old port.
    assert_eq!(
        (client_stats.wrong_tid, stats.wrong_tid),
        (1, 1),
        "client {client_stats}, server {stats}"
    );
}

/// An upload of `data` whose server future is dropped a quarter of the way
/// (after 5 of its 21 blocks), then (`end`) the transfer ended, and the server
/// run again beside the client to the client's end: its outcome, and the file
/// stored, if any.
async fn put_with_the_server_dropped_halfway(
    data: &[u8],
    end: bool,
) -> (
    Result<u64, smolsock::tftp::TftpError>,
    Option<smolsock::store::FileStat>,
) {
    use smolsock::asynch::Clock;
    let net = Net::new(Box::new(|_, _, _| false));
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let mut server = Server::new(&shared, ServerConfig::DEFAULT);
    let (mut listen, mut port, mut socket) =
        (net.bind(SERVER), net.bind(TRANSFER_PORT), net.bind(CLIENT));
    let clock = TokioClock(tokio::time::Instant::now());
    let (mut request, mut datagram, mut buf) = (vec![0u8; 516], vec![0u8; 517], vec![0u8; 517]);
    let name = FileName::new("up").unwrap();
    let halfway = tokio::sync::Notify::new();
    let mut client = Client::new(&mut socket, SERVER, &mut buf);
    let put = client.put(&clock, name, ClientConfig::DEFAULT, data, |done, _| {
        if done >= 5 * 512 {
            halfway.notify_one();
        }
    });
    let mut put = std::pin::pin!(put);
    tokio::select! {
        biased;
        () = halfway.notified() => {}
        outcome = &mut put => panic!("the put ended early: {outcome:?}"),
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    }
    assert!(server.is_active(), "dropped mid-upload");
    if end {
        server.end(clock.now());
        assert!(!server.is_active());
    }
    let outcome = tokio::select! {
        biased;
        outcome = &mut put => outcome,
        never = server.run(&mut listen, &mut port, &clock, &mut request, &mut datagram) => never,
    };
    let file = shared
        .with_store(|s| {
            use smolsock::store::Storage;
            s.stat(&name).ok()
        })
        .unwrap();
    (outcome, file)
}

#[tokio::test(start_paused = true)]
async fn an_upload_whose_server_future_was_dropped_is_carried_on_by_the_next_run() {
    let data = pattern(20 * 512 + 7);
    let (outcome, file) = put_with_the_server_dropped_halfway(&data, false).await;
    assert_eq!(outcome, Ok(data.len() as u64));
    let file = file.expect("stored");
    assert_eq!(file.size, data.len() as u64);
    assert_eq!(file.crc, smolsock::wire::crc32::crc32(&data));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_server_future_and_end_stop_the_upload_and_leave_no_file() {
    let data = pattern(20 * 512 + 7);
    let (outcome, file) = put_with_the_server_dropped_halfway(&data, true).await;
    assert!(outcome.is_err(), "the put went on: {outcome:?}");
    assert_eq!(file, None);
}
