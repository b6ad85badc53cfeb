//! The sessions on bytes: every packet type and option, refusals, loss and
//! retransmission, duplicates and reordering, roll-over past 65535 blocks, a
//! full store, and a peer that goes silent.

use super::packet::{ErrorCode, Mode, Options, Packet, RequestKind};
use super::*;
use crate::macros::bounded_while_let;
use crate::store::{FileName, RamStore, Storage, StoreError};
use crate::time::Instant;
use crate::transfer::{SharedStore, SliceSink, UploadLease};

type Store = RamStore<8, 200_000>;

fn shared() -> SharedStore<Store, [UploadLease; 2]> {
    SharedStore::new(Store::new(), [UploadLease::EMPTY; 2])
}

fn put_file<S: Storage, L: ?Sized>(shared: &SharedStore<S, L>, name: &str, data: &[u8]) {
    shared
        .with_store(|s| {
            let name = FileName::new(name).unwrap();
            let mut up = s.begin_upload(&name, data.len() as u64, false).unwrap();
            s.append(&mut up, data).unwrap();
            s.commit(&up, crate::wire::crc32::crc32(data)).unwrap();
        })
        .unwrap();
}

fn read_file<S: Storage, L: ?Sized>(shared: &SharedStore<S, L>, name: &str) -> Option<Vec<u8>> {
    shared
        .with_store(|s| {
            let name = FileName::new(name).unwrap();
            let size = s.stat(&name).ok()?.size as usize;
            let mut buf = vec![0u8; size];
            assert_eq!(s.read(&name, 0, &mut buf).unwrap(), size);
            Some(buf)
        })
        .unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn request(kind: RequestKind, name: &[u8], mode: Mode, options: Options) -> Vec<u8> {
    let mut buf = [0u8; 512];
    let n = Packet::Request {
        kind,
        filename: name,
        mode,
        options,
    }
    .emit(&mut buf)
    .unwrap();
    buf[..n].to_vec()
}

fn emit(packet: Packet<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = packet.emit(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Everything `server` sends now.
fn drain<S: Storage>(server: &mut ServerTransfer<'_, S>, now: Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    for _ in 0..1000 {
        let n = server.transmit(&mut buf, now);
        if n == 0 {
            break;
        }
        out.push(buf[..n].to_vec());
    }
    out
}

fn parse(datagram: &[u8]) -> Packet<'_> {
    Packet::parse(datagram).unwrap()
}

/// The code of `datagram` if it is an ERROR.
fn error_code(datagram: &[u8]) -> Option<ErrorCode> {
    match parse(datagram) {
        Packet::Error { code, .. } => Some(code),
        _ => None,
    }
}

/// A get of "f" into `into`, reporting no progress, whose RRQ went out at
/// `now` (through `buf`).
fn get_asked<'a>(
    into: &'a mut [u8],
    config: ClientConfig,
    buf: &mut [u8],
    now: Instant,
) -> ClientGet<SliceSink<'a>, fn(u64, Option<u64>)> {
    let mut get: ClientGet<SliceSink<'a>, fn(u64, Option<u64>)> = ClientGet::new(
        FileName::new("f").unwrap(),
        config,
        SliceSink::new(into),
        |_, _| {},
    );
    assert!(get.transmit(buf, now) > 0, "the RRQ");
    get
}

/// A server transfer of 512-byte blocks that took a plain WRQ for `name` at
/// `now`, and sent its ACK 0.
fn upload_begun<'s, S: Storage>(
    shared: &'s SharedStore<S>,
    name: &[u8],
    now: Instant,
) -> ServerTransfer<'s, S> {
    let mut server = ServerTransfer::new(shared, config(512));
    server.start(
        &request(RequestKind::Write, name, Mode::Octet, Options::NONE),
        now,
    );
    drain(&mut server, now);
    server
}

fn config(block: u16) -> ServerConfig {
    ServerConfig {
        max_block_size: block,
        ..ServerConfig::DEFAULT
    }
}

#[test]
fn an_rrq_without_options_gets_data_at_once_and_ends_on_the_last_ack() {
    let shared = shared();
    let data = pattern(1024);
    put_file(&shared, "boot.bin", &data);
    let mut server = ServerTransfer::new(&shared, config(512));
    let now = Instant::ZERO;
    server.start(
        &request(RequestKind::Read, b"boot.bin", Mode::Octet, Options::NONE),
        now,
    );
    let out = drain(&mut server, now);
    assert_eq!(out.len(), 1);
    assert_eq!(
        parse(&out[0]),
        Packet::Data {
            block: 1,
            data: &data[..512]
        }
    );
    server.receive(&emit(Packet::Ack { block: 1 }), now);
    let out = drain(&mut server, now);
    assert_eq!(
        parse(&out[0]),
        Packet::Data {
            block: 2,
            data: &data[512..]
        }
    );
    server.receive(&emit(Packet::Ack { block: 2 }), now);
    // 1024 is two whole blocks: an empty third one ends the file.
    let out = drain(&mut server, now);
    assert_eq!(
        parse(&out[0]),
        Packet::Data {
            block: 3,
            data: b""
        }
    );
    assert!(server.is_active());
    server.receive(&emit(Packet::Ack { block: 3 }), now);
    assert!(!server.is_active());
    assert_eq!(server.outcome(), Some(Ok(1024)));
    assert_eq!(server.stats().completed, 1);
}

#[test]
fn an_rrq_with_options_gets_an_oack_with_blksize_clamped_tsize_timeout_and_window() {
    let shared = shared();
    put_file(&shared, "f", &pattern(3000));
    let mut server = ServerTransfer::new(&shared, config(1024));
    let now = Instant::ZERO;
    let asked = Options {
        block_size: Some(1428),
        timeout_secs: Some(3),
        transfer_size: Some(0),
        window_size: Some(64),
    };
    server.start(&request(RequestKind::Read, b"f", Mode::Octet, asked), now);
    let out = drain(&mut server, now);
    assert_eq!(out.len(), 1, "the OACK goes alone");
    let Packet::Oack { options } = parse(&out[0]) else {
        panic!("an OACK");
    };
    assert_eq!(
        options,
        Options {
            block_size: Some(1024),
            timeout_secs: Some(3),
            transfer_size: Some(3000),
            window_size: Some(16),
        }
    );
    // Its timeout is the one asked for: 3 s.
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(3)));
    // A timeout over the server's limit is not granted.
    let mut other = ServerTransfer::new(&shared, config(1024));
    let long = Options {
        timeout_secs: Some(200),
        ..Options::NONE
    };
    other.start(&request(RequestKind::Read, b"f", Mode::Octet, long), now);
    assert_eq!(
        parse(&drain(&mut other, now)[0]),
        Packet::Data {
            block: 1,
            data: &pattern(3000)[..512]
        }
    );
    assert_eq!(other.poll_timeout(), Some(Instant::from_secs(1)));
    server.receive(&emit(Packet::Ack { block: 0 }), now);
    let out = drain(&mut server, now);
    // A window of 16, but the file has 3 blocks.
    let blocks: Vec<_> = out
        .iter()
        .map(|d| match parse(d) {
            Packet::Data { block, data } => (block, data.len()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(blocks, [(1, 1024), (2, 1024), (3, 952)]);
    server.receive(&emit(Packet::Ack { block: 3 }), now);
    assert_eq!(server.outcome(), Some(Ok(3000)));
}

#[test]
fn a_wrq_is_acked_with_block_0_and_committed_only_when_the_last_block_is_in() {
    let shared = shared();
    let mut server = ServerTransfer::new(&shared, config(512));
    let now = Instant::ZERO;
    server.start(
        &request(RequestKind::Write, b"/up.bin", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(
        drain(&mut server, now)
            .iter()
            .map(|d| parse(d))
            .collect::<Vec<_>>(),
        [Packet::Ack { block: 0 }]
    );
    let data = pattern(512 + 1);
    server.receive(
        &emit(Packet::Data {
            block: 1,
            data: &data[..512],
        }),
        now,
    );
    assert_eq!(parse(&drain(&mut server, now)[0]), Packet::Ack { block: 1 });
    assert_eq!(
        read_file(&shared, "up.bin"),
        None,
        "no file before the last block"
    );
    server.receive(
        &emit(Packet::Data {
            block: 2,
            data: &data[512..],
        }),
        now,
    );
    assert_eq!(parse(&drain(&mut server, now)[0]), Packet::Ack { block: 2 });
    assert_eq!(read_file(&shared, "up.bin").as_deref(), Some(&data[..]));
    assert_eq!(server.outcome(), Some(Ok(513)));
    // Our last ACK was lost: the repeat of the last DATA is answered again.
    server.receive(
        &emit(Packet::Data {
            block: 2,
            data: &data[512..],
        }),
        now,
    );
    assert_eq!(parse(&drain(&mut server, now)[0]), Packet::Ack { block: 2 });
    // It is answered for as long as the client may retry (6 timeouts), no longer.
    server.handle_timeout(Instant::from_secs(5));
    assert!(server.is_active());
    server.handle_timeout(Instant::from_secs(6));
    assert!(!server.is_active());
}

#[test]
fn a_wrq_with_tsize_too_big_for_the_store_is_refused_before_any_data() {
    let shared = shared();
    let mut server = ServerTransfer::new(&shared, config(512));
    let asked = Options {
        transfer_size: Some(2 << 20),
        ..Options::NONE
    };
    server.start(
        &request(RequestKind::Write, b"big", Mode::Octet, asked),
        Instant::ZERO,
    );
    let out = drain(&mut server, Instant::ZERO);
    assert!(matches!(
        parse(&out[0]),
        Packet::Error {
            code: ErrorCode::DiskFull,
            ..
        }
    ));
    assert_eq!(server.stats().refused, 1);
}

#[test]
fn an_upload_that_fills_the_store_ends_with_disk_full_and_leaves_no_file() {
    let shared = SharedStore::new(RamStore::<4, 2000>::new(), [UploadLease::EMPTY; 1]);
    let now = Instant::ZERO;
    let mut server = upload_begun(&shared, b"big", now);
    let block = [7u8; 512];
    let mut last = None;
    for n in 1..=5u16 {
        server.receive(
            &emit(Packet::Data {
                block: n,
                data: &block,
            }),
            now,
        );
        last = drain(&mut server, now).pop();
        if !server.is_active() {
            break;
        }
    }
    assert!(matches!(
        parse(&last.unwrap()),
        Packet::Error {
            code: ErrorCode::DiskFull,
            ..
        }
    ));
    assert!(matches!(
        server.outcome(),
        Some(Err(TftpError::Store(
            StoreError::Full { .. } | StoreError::FileTooLarge { .. }
        )))
    ));
    let name = FileName::new("big").unwrap();
    shared.with_store(|s| {
        assert_eq!(s.stat(&name), Err(StoreError::NotFound));
        // The partial is gone too: the whole store is free again.
        let up = s.begin_upload(&name, 2000, false).unwrap();
        assert_eq!(up.written(), 0);
    });
}

#[test]
fn refusals_say_why_netascii_traversal_not_found_and_busy() {
    let shared = shared();
    let now = Instant::ZERO;
    let refused = |req: Vec<u8>| {
        let mut server = ServerTransfer::new(&shared, config(512));
        server.start(&req, now);
        let out = drain(&mut server, now);
        assert!(!server.is_active());
        assert_eq!(server.stats().refused, 1);
        match parse(&out[0]) {
            Packet::Error { code, message } => {
                (code, String::from_utf8_lossy(message).into_owned())
            }
            other => panic!("{other:?}"),
        }
    };
    let (code, message) = refused(request(
        RequestKind::Read,
        b"f",
        Mode::Netascii,
        Options::NONE,
    ));
    assert_eq!(code, ErrorCode::NotDefined);
    assert!(message.contains("octet"), "{message}");
    for name in [
        &b"../etc/passwd"[..],
        b"/etc/passwd",
        b"a\\b",
        b".hidden",
        b"..",
    ] {
        assert_eq!(
            refused(request(RequestKind::Read, name, Mode::Octet, Options::NONE)).0,
            ErrorCode::AccessViolation
        );
        assert_eq!(
            refused(request(
                RequestKind::Write,
                name,
                Mode::Octet,
                Options::NONE
            ))
            .0,
            ErrorCode::AccessViolation
        );
    }
    assert_eq!(
        refused(request(
            RequestKind::Read,
            b"nothing",
            Mode::Octet,
            Options::NONE
        ))
        .0,
        ErrorCode::FileNotFound
    );
    assert_eq!(
        refused(emit(Packet::Ack { block: 1 })).0,
        ErrorCode::IllegalOperation
    );
    assert_eq!(
        refused(b"\0\x09junk".to_vec()).0,
        ErrorCode::IllegalOperation
    );
    // A second writer of a name being written is refused.
    let mut first = ServerTransfer::new(&shared, config(512));
    first.start(
        &request(RequestKind::Write, b"w", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(
        refused(request(
            RequestKind::Write,
            b"w",
            Mode::Octet,
            Options::NONE
        ))
        .0,
        ErrorCode::AccessViolation
    );
}

#[test]
fn a_duplicate_ack_never_triggers_a_retransmission() {
    let shared = shared();
    put_file(&shared, "f", &pattern(5000));
    let mut server = ServerTransfer::new(&shared, config(512));
    let now = Instant::ZERO;
    server.start(
        &request(RequestKind::Read, b"f", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(drain(&mut server, now).len(), 1);
    server.receive(&emit(Packet::Ack { block: 1 }), now);
    assert_eq!(drain(&mut server, now).len(), 1);
    for _ in 0..3 {
        server.receive(&emit(Packet::Ack { block: 1 }), now);
        assert!(
            drain(&mut server, now).is_empty(),
            "no Sorcerer's Apprentice"
        );
    }
    assert_eq!(server.stats().duplicates, 3);
    assert_eq!(server.stats().retransmits, 0);
}

#[test]
fn a_silent_client_gets_bounded_retransmissions_then_an_error_and_is_counted() {
    let shared = shared();
    put_file(&shared, "f", &pattern(100));
    let mut server = ServerTransfer::new(&shared, config(512));
    server.start(
        &request(RequestKind::Read, b"f", Mode::Octet, Options::NONE),
        Instant::ZERO,
    );
    let mut sent = drain(&mut server, Instant::ZERO).len();
    let mut now = Instant::ZERO;
    for _ in 0..20 {
        let Some(at) = server.poll_timeout() else {
            break;
        };
        now = at;
        server.handle_timeout(now);
        sent += drain(&mut server, now).len();
    }
    assert!(!server.is_active());
    // The first DATA, 5 retransmissions, and the ERROR that ends it.
    assert_eq!(sent, 1 + 5 + 1);
    assert_eq!(server.stats().timeouts, 1);
    assert_eq!(server.stats().failed, 1);
    assert_eq!(server.outcome(), Some(Err(TftpError::TimedOut)));
    assert_eq!(now, Instant::from_secs(6));
}

#[test]
fn an_upload_whose_client_goes_silent_leaves_no_file_and_frees_its_name() {
    let shared = shared();
    let now = Instant::ZERO;
    let mut server = upload_begun(&shared, b"half", now);
    server.receive(
        &emit(Packet::Data {
            block: 1,
            data: &[1; 512],
        }),
        now,
    );
    drain(&mut server, now);
    for _ in 0..20 {
        let Some(at) = server.poll_timeout() else {
            break;
        };
        server.handle_timeout(at);
        drain(&mut server, at);
    }
    assert!(!server.is_active());
    assert_eq!(read_file(&shared, "half"), None);
    // The name is free again for a new writer.
    let mut again = ServerTransfer::new(&shared, config(512));
    again.start(
        &request(RequestKind::Write, b"half", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(parse(&drain(&mut again, now)[0]), Packet::Ack { block: 0 });
}

#[test]
fn a_slot_dropped_mid_upload_frees_the_name() {
    let shared = shared();
    let now = Instant::ZERO;
    let server = upload_begun(&shared, b"half", now);
    // Never ended, as when the task that ran it is cancelled.
    drop(server);
    let mut again = ServerTransfer::new(&shared, config(512));
    again.start(
        &request(RequestKind::Write, b"half", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(parse(&drain(&mut again, now)[0]), Packet::Ack { block: 0 });
}

#[test]
fn an_error_from_the_client_ends_the_transfer_without_an_answer() {
    let shared = shared();
    put_file(&shared, "f", &pattern(2000));
    let mut server = ServerTransfer::new(&shared, config(512));
    let now = Instant::ZERO;
    server.start(
        &request(RequestKind::Read, b"f", Mode::Octet, Options::NONE),
        now,
    );
    drain(&mut server, now);
    server.receive(
        &emit(Packet::Error {
            code: ErrorCode::NotDefined,
            message: b"bye",
        }),
        now,
    );
    assert!(drain(&mut server, now).is_empty());
    assert!(!server.is_active());
    assert_eq!(
        server.outcome(),
        Some(Err(TftpError::Peer(ErrorCode::NotDefined)))
    );
}

/// A tiny seeded generator for the lossy link.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Faults in percent.
#[derive(Clone, Copy)]
struct Faults {
    loss: u64,
    duplicate: u64,
    reorder: u64,
}

const CLEAN: Faults = Faults {
    loss: 0,
    duplicate: 0,
    reorder: 0,
};

/// Puts datagrams on a link with `faults`: lost, doubled, or swapped with the
/// one before.
fn send(queue: &mut Vec<Vec<u8>>, datagram: Vec<u8>, faults: Faults, rng: &mut Rng) {
    if rng.below(100) < faults.loss {
        return;
    }
    let copies = if rng.below(100) < faults.duplicate {
        2
    } else {
        1
    };
    for _ in 0..copies {
        queue.push(datagram.clone());
        if queue.len() >= 2 && rng.below(100) < faults.reorder {
            let len = queue.len();
            queue.swap(len - 1, len - 2);
        }
    }
}

/// Runs a client against a server slot over a link with `faults`, in virtual
/// time, until the client has its outcome (or `steps` rounds pass); returns the
/// outcome and the virtual time it took.
fn run<S: Storage>(
    client: &mut dyn super::client::ClientSession,
    server: &mut ServerTransfer<'_, S>,
    faults: Faults,
    seed: u64,
    steps: usize,
) -> (Option<Result<u64, TftpError>>, Instant) {
    let mut rng = Rng(seed | 1);
    let mut now = Instant::ZERO;
    let mut started = false;
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 70_000];
    for _ in 0..steps {
        let mut moved = false;
        for _ in 0..100 {
            let n = client.transmit(&mut buf, now);
            if n == 0 {
                break;
            }
            send(&mut to_server, buf[..n].to_vec(), faults, &mut rng);
        }
        for datagram in core::mem::take(&mut to_server) {
            moved = true;
            let is_request = matches!(Packet::parse(&datagram), Ok(Packet::Request { .. }));
            match (started, is_request) {
                (false, true) => {
                    server.start(&datagram, now);
                    started = true;
                }
                // A repeated request after the transfer began goes to port 69,
                // which knows this client already: ignored.
                (true, true) | (false, false) => {}
                (true, false) => server.receive(&datagram, now),
            }
        }
        for _ in 0..100 {
            let n = server.transmit(&mut buf, now);
            if n == 0 {
                break;
            }
            send(&mut to_client, buf[..n].to_vec(), faults, &mut rng);
        }
        for datagram in core::mem::take(&mut to_client) {
            moved = true;
            client.receive(&datagram, now);
        }
        if let Some(outcome) = client.outcome() {
            return (Some(outcome), now);
        }
        if !moved {
            let next = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else {
                return (None, now);
            };
            now = next.max(now);
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
    }
    (None, now)
}

fn get_over<S: Storage>(
    shared: &SharedStore<S>,
    faults: Faults,
    seed: u64,
    size: usize,
    client_config: ClientConfig,
    server_block: u16,
) -> Vec<u8> {
    let data = pattern(size);
    put_file(shared, "f", &data);
    let mut server = ServerTransfer::new(shared, config(server_block));
    let mut store = vec![0u8; size];
    let mut reports = 0u64;
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        client_config,
        SliceSink::new(&mut store),
        |_, total| {
            // An empty file's size goes unsaid (curl refuses `tsize 0`).
            let said = client_config.transfer_size && size > 0;
            assert_eq!(total, said.then_some(size as u64));
            reports += 1;
        },
    );
    let (outcome, _) = run(&mut client, &mut server, faults, seed, 200_000);
    assert_eq!(outcome, Some(Ok(size as u64)), "seed {seed}");
    assert!(client.sink().is_complete());
    let got = client.sink().data().to_vec();
    assert_eq!(got, data, "seed {seed}");
    got
}

fn put_over<S: Storage>(
    shared: &SharedStore<S>,
    faults: Faults,
    seed: u64,
    size: usize,
    client_config: ClientConfig,
) {
    let data = pattern(size);
    let mut server = ServerTransfer::new(shared, config(8192));
    let mut client = ClientPut::new(
        FileName::new("f").unwrap(),
        client_config,
        &data[..],
        |_, _| {},
    );
    let (outcome, _) = run(&mut client, &mut server, faults, seed, 200_000);
    assert_eq!(outcome, Some(Ok(size as u64)), "seed {seed}");
    // The server commits before its last ACK: the file is there, whole.
    assert_eq!(
        read_file(shared, "f").as_deref(),
        Some(&data[..]),
        "seed {seed}"
    );
}

const OPTIONS: ClientConfig = ClientConfig {
    block_size: Some(1428),
    window: Some(8),
    ..ClientConfig::DEFAULT
};

#[test]
fn gets_and_puts_move_every_byte_for_the_edge_sizes() {
    let shared = shared();
    for size in [0, 511, 512, 513, 1428, 1429, 60_000] {
        get_over(&shared, CLEAN, 1, size, ClientConfig::DEFAULT, 512);
        get_over(&shared, CLEAN, 1, size, OPTIONS, 8192);
        put_over(&shared, CLEAN, 1, size, ClientConfig::DEFAULT);
        put_over(&shared, CLEAN, 1, size, OPTIONS);
    }
}

#[test]
fn a_lossy_link_that_duplicates_and_reorders_still_delivers_every_byte() {
    let faults = Faults {
        loss: 10,
        duplicate: 10,
        reorder: 10,
    };
    let shared = shared();
    for seed in 1..=16 {
        for config in [ClientConfig::DEFAULT, OPTIONS] {
            get_over(&shared, faults, seed, 60_000, config, 8192);
            put_over(&shared, faults, seed, 60_000, config);
        }
    }
}

#[test]
fn block_numbers_roll_over_past_65535_blocks() {
    // 70 000 blocks of 8 bytes: block 65536 goes out as 0.
    let config = ClientConfig {
        block_size: Some(8),
        window: Some(16),
        ..ClientConfig::DEFAULT
    };
    // The store is too big for a test thread's stack: a thread with a bigger one.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            let shared = SharedStore::new(
                RamStore::<4, { 1200 * 1024 }>::new(),
                [UploadLease::EMPTY; 1],
            );
            get_over(&shared, CLEAN, 3, 70_000 * 8 + 3, config, 8);
            put_over(&shared, CLEAN, 3, 70_000 * 8 + 3, config);
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn a_client_whose_server_never_answers_gives_up_after_its_tries() {
    let mut store = [0u8; 16];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig::DEFAULT,
        SliceSink::new(&mut store),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    let mut sent = 0;
    let mut now = Instant::ZERO;
    for _ in 0..20 {
        bounded_while_let!(1.. = client.transmit(&mut buf, now) => {
            sent += 1;
        });
        let Some(at) = client.poll_timeout() else {
            break;
        };
        now = at;
        client.handle_timeout(now);
    }
    assert_eq!(client.outcome(), Some(Err(TftpError::TimedOut)));
    assert_eq!(sent, 6, "the RRQ and 5 retries");
}

#[test]
fn a_get_dallies_and_acks_the_last_block_again_when_its_final_ack_is_lost() {
    let shared = shared();
    let data = pattern(1000);
    put_file(&shared, "f", &data);
    let mut server = ServerTransfer::new(&shared, config(512));
    let mut into = [0u8; 1000];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig::DEFAULT,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    let now = Instant::ZERO;
    let n = client.transmit(&mut buf, now);
    server.start(&buf[..n], now);
    // Blocks 1 and 2 (the short last one), each ACKed.
    let mut final_ack = None;
    for _ in 0..10 {
        for datagram in drain(&mut server, now) {
            client.receive(&datagram, now);
        }
        let n = client.transmit(&mut buf, now);
        assert!(n > 0, "an ACK");
        if client.is_dallying() {
            final_ack = Some(buf[..n].to_vec());
            break;
        }
        server.receive(&buf[..n], now);
    }
    // The outcome is there at once, with the final ACK; the ACK is lost.
    assert_eq!(parse(&final_ack.unwrap()), Packet::Ack { block: 2 });
    assert_eq!(client.outcome(), Some(Ok(1000)));
    assert!(!client.is_done());
    assert_eq!(client.poll_timeout(), Some(Instant::from_secs(6)));
    // The server's timer fires: block 2 again, and the dallying get ACKs it again.
    let later = server.poll_timeout().unwrap();
    assert_eq!(later, Instant::from_secs(1));
    server.handle_timeout(later);
    let again = drain(&mut server, later);
    assert_eq!(
        again.iter().map(|d| parse(d)).collect::<Vec<_>>(),
        [Packet::Data {
            block: 2,
            data: &data[512..]
        }]
    );
    client.receive(&again[0], later);
    let n = client.transmit(&mut buf, later);
    assert_eq!(parse(&buf[..n]), Packet::Ack { block: 2 });
    assert_eq!(client.transmit(&mut buf, later), 0, "one ACK per repeat");
    server.receive(&buf[..n], later);
    // The server ends clean: no timeout, no failure.
    assert!(!server.is_active());
    assert_eq!(server.outcome(), Some(Ok(1000)));
    assert_eq!(
        (
            server.stats().completed,
            server.stats().failed,
            server.stats().timeouts,
            server.stats().retransmits
        ),
        (1, 0, 0, 1)
    );
    // The dally runs from the last repeat (a few repeats put it off), then the
    // get is done; its outcome was given once.
    assert_eq!(client.stats().duplicates, 1);
    assert_eq!(client.poll_timeout(), Some(Instant::from_secs(7)));
    client.handle_timeout(Instant::from_secs(6));
    assert!(client.is_dallying());
    client.handle_timeout(Instant::from_secs(7));
    assert!(client.is_done());
    assert_eq!(client.poll_timeout(), None);
    assert_eq!(client.outcome(), None);
    assert_eq!(client.stats().completed, 1);
    assert!(client.sink().is_complete());
    assert_eq!(client.sink().data(), &data[..]);
}

#[test]
fn a_client_refuses_an_oack_granting_more_than_it_asked() {
    let mut store = [0u8; 16];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig {
            block_size: Some(512),
            ..ClientConfig::DEFAULT
        },
        SliceSink::new(&mut store),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    client.transmit(&mut buf, Instant::ZERO);
    let oack = emit(Packet::Oack {
        options: Options {
            block_size: Some(1024),
            ..Options::NONE
        },
    });
    client.receive(&oack, Instant::ZERO);
    let n = client.transmit(&mut buf, Instant::ZERO);
    assert!(matches!(
        parse(&buf[..n]),
        Packet::Error {
            code: ErrorCode::OptionRefused,
            ..
        }
    ));
    assert_eq!(client.outcome(), Some(Err(TftpError::BadOptions)));
}

#[test]
fn random_datagrams_never_panic_a_session() {
    use proptest::prelude::*;
    let shared = shared();
    put_file(&shared, "f", &pattern(3000));
    proptest!(|(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..12), read in any::<bool>())| {
        let mut server = ServerTransfer::new(&shared, config(512));
        let kind = if read { RequestKind::Read } else { RequestKind::Write };
        server.start(&request(kind, b"f", Mode::Octet, Options::NONE), Instant::ZERO);
        for (i, d) in datagrams.iter().enumerate() {
            let now = Instant::from_millis(i as u64 * 300);
            server.receive(d, now);
            server.handle_timeout(now);
            drain(&mut server, now);
        }
        server.end(Instant::from_secs(100));
        let mut sink = [0u8; 64];
        let mut client = ClientGet::new(FileName::new("g").unwrap(), OPTIONS, SliceSink::new(&mut sink), |_, _| {});
        let mut buf = [0u8; 2000];
        for d in &datagrams {
            client.receive(d, Instant::ZERO);
            client.transmit(&mut buf, Instant::ZERO);
        }
        // Then silence: the client ends within its tries (or its dally).
        let mut now = Instant::ZERO;
        for _ in 0..20 {
            bounded_while_let!(1.. = client.transmit(&mut buf, now) => {});
            let Some(at) = client.poll_timeout() else { break };
            now = at.max(now);
            client.handle_timeout(now);
        }
        bounded_while_let!(1.. = client.transmit(&mut buf, now) => {});
        prop_assert!(client.is_done());
    });
}

#[test]
fn session_sizes_are_pinned() {
    use core::mem::size_of;
    let server = size_of::<ServerTransfer<'static, Store>>();
    assert!(server <= 408, "ServerTransfer is {server} bytes");
    type Progress = fn(u64, Option<u64>);
    let get = size_of::<ClientGet<SliceSink<'static>, Progress>>();
    let put = size_of::<ClientPut<&'static [u8], Progress>>();
    assert!(
        get <= 416 && put <= 416,
        "ClientGet {get}, ClientPut {put} bytes"
    );
}

#[test]
fn a_request_without_blksize_gets_512_byte_blocks_or_a_refusal_when_512_do_not_fit() {
    let shared = shared();
    let data = pattern(1000);
    put_file(&shared, "f", &data);
    let now = Instant::ZERO;
    // Room for more than 512: RFC 1350's 512, not the most the server could send.
    let mut server = ServerTransfer::new(&shared, config(1428));
    server.start(
        &request(RequestKind::Read, b"f", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(
        parse(&drain(&mut server, now)[0]),
        Packet::Data {
            block: 1,
            data: &data[..512]
        }
    );
    // Room for less: a short first block would read as the whole file, and a
    // client's last short block as a middle one. Refused, reads and writes.
    for kind in [RequestKind::Read, RequestKind::Write] {
        let mut server = ServerTransfer::new(&shared, config(256));
        server.start(&request(kind, b"f", Mode::Octet, Options::NONE), now);
        let out = drain(&mut server, now);
        assert_eq!(out.len(), 1, "{kind:?}");
        assert!(
            matches!(parse(&out[0]), Packet::Error { code: ErrorCode::NotDefined, message } if message.ends_with(b"blksize")),
            "{kind:?}: {:?}",
            parse(&out[0])
        );
        assert_eq!(server.stats().refused, 1, "{kind:?}");
        assert!(!server.is_active());
    }
    // A client that asks for blocks is granted what fits, and gets the file whole.
    let asking = ClientConfig {
        block_size: Some(512),
        ..ClientConfig::DEFAULT
    };
    get_over(&shared, CLEAN, 3, 1000, asking, 256);
    // One that does not is told why, and keeps nothing.
    let mut server = ServerTransfer::new(&shared, config(256));
    let mut into = vec![0u8; 1000];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig::DEFAULT,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let (outcome, _) = run(&mut client, &mut server, CLEAN, 3, 1000);
    assert_eq!(outcome, Some(Err(TftpError::Peer(ErrorCode::NotDefined))));
    assert!(!client.sink().is_complete());
}

#[test]
fn a_data_longer_than_the_block_size_is_refused_by_the_server_and_by_a_get() {
    let shared = shared();
    let now = Instant::ZERO;
    let long = pattern(513);
    // The server taking an upload of 512-byte blocks.
    let mut server = ServerTransfer::new(&shared, config(1428));
    server.start(
        &request(RequestKind::Write, b"up", Mode::Octet, Options::NONE),
        now,
    );
    assert_eq!(parse(&drain(&mut server, now)[0]), Packet::Ack { block: 0 });
    server.receive(
        &emit(Packet::Data {
            block: 1,
            data: &long,
        }),
        now,
    );
    let out = drain(&mut server, now);
    assert_eq!(
        error_code(&out[0]),
        Some(ErrorCode::IllegalOperation),
        "{:?}",
        parse(&out[0])
    );
    let refused = TftpError::BlockTooLong {
        len: 513,
        block_size: 512,
    };
    assert_eq!(server.outcome(), Some(Err(refused)));
    assert_eq!(read_file(&shared, "up"), None, "nothing stored");
    // A get with no options (512-byte blocks).
    let mut into = vec![0u8; 2000];
    let mut buf = vec![0u8; 600];
    let mut get = get_asked(&mut into, ClientConfig::DEFAULT, &mut buf, now);
    get.receive(
        &emit(Packet::Data {
            block: 1,
            data: &long,
        }),
        now,
    );
    let n = get.transmit(&mut buf, now);
    assert_eq!(
        error_code(&buf[..n]),
        Some(ErrorCode::IllegalOperation),
        "{:?}",
        parse(&buf[..n])
    );
    assert_eq!(get.outcome(), Some(Err(refused)));
    assert!(!get.sink().is_complete());
}

#[test]
fn a_get_fails_when_the_file_is_longer_or_shorter_than_the_tsize_announced() {
    let now = Instant::ZERO;
    let asking = ClientConfig {
        block_size: Some(512),
        transfer_size: true,
        ..ClientConfig::DEFAULT
    };
    // (announced, blocks sent, the error): short at the last block, long as
    // soon as a block passes the size announced.
    let cases = [
        (1000u64, &[512usize, 100][..], 612u64),
        (600, &[512, 512], 1024),
    ];
    for (announced, blocks, received) in cases {
        let mut into = vec![0u8; 4096];
        let mut buf = vec![0u8; 600];
        let mut get = get_asked(&mut into, asking, &mut buf, now);
        let options = Options {
            block_size: Some(512),
            transfer_size: Some(announced),
            ..Options::NONE
        };
        get.receive(&emit(Packet::Oack { options }), now);
        assert_eq!(get.transmit(&mut buf, now), 4, "ACK 0");
        let data = pattern(512);
        for (i, &len) in blocks.iter().enumerate() {
            let block = i as u16 + 1;
            get.receive(
                &emit(Packet::Data {
                    block,
                    data: &data[..len],
                }),
                now,
            );
            let n = get.transmit(&mut buf, now);
            if i + 1 < blocks.len() {
                assert_eq!(parse(&buf[..n]), Packet::Ack { block });
            } else {
                assert!(
                    matches!(parse(&buf[..n]), Packet::Error { .. }),
                    "{announced}: {:?}",
                    parse(&buf[..n])
                );
            }
        }
        assert_eq!(
            get.outcome(),
            Some(Err(TftpError::SizeMismatch {
                announced,
                received
            }))
        );
        assert!(!get.sink().is_complete(), "{announced}");
    }
}

#[test]
fn a_client_repeating_an_old_block_puts_off_the_servers_deadline_only_so_often() {
    // Each repeat is answered (our ACK may have been lost), and the first five
    // start the tries again, as a sender's own repeats would; no more: the
    // transfer ends after its tries.
    let shared = shared();
    let mut now = Instant::ZERO;
    let mut server = upload_begun(&shared, b"up", now);
    let block = pattern(512);
    let data = emit(Packet::Data {
        block: 1,
        data: &block,
    });
    server.receive(&data, now);
    assert_eq!(parse(&drain(&mut server, now)[0]), Packet::Ack { block: 1 });
    let mut answered = 0;
    for _ in 0..200 {
        if !server.is_active() {
            break;
        }
        now = now.saturating_add(crate::time::Duration::from_millis(300));
        if server.poll_timeout().is_some_and(|at| now >= at) {
            server.handle_timeout(now);
        }
        server.receive(&data, now);
        answered += drain(&mut server, now).len();
    }
    assert!(!server.is_active(), "still held at {now:?}");
    assert_eq!(server.outcome(), Some(Err(TftpError::TimedOut)));
    assert!(answered > 5, "the repeats were answered");
    // Six timeouts of a second after the fifth repeat (1.5 s), each seen up to
    // one step late.
    assert!(now <= Instant::from_millis(9300), "ended at {now:?}");
    assert_eq!(read_file(&shared, "up"), None);
}

#[test]
fn a_get_waits_a_whole_timeout_after_a_late_oack_and_repeats_put_it_off_only_so_often() {
    let asking = ClientConfig {
        block_size: Some(512),
        ..ClientConfig::DEFAULT
    };
    let mut into = vec![0u8; 4096];
    let mut buf = vec![0u8; 600];
    let mut get = get_asked(&mut into, asking, &mut buf, Instant::ZERO);
    // The OACK comes late, 900 ms into the request's second: ACK 0 then waits
    // a whole timeout for DATA 1, not what was left of the request's.
    let late = Instant::from_millis(900);
    let options = Options {
        block_size: Some(512),
        ..Options::NONE
    };
    get.receive(&emit(Packet::Oack { options }), late);
    assert_eq!(get.transmit(&mut buf, late), 4, "ACK 0");
    assert_eq!(
        get.poll_timeout(),
        Some(late.saturating_add(DEFAULT_TIMEOUT))
    );
    // DATA 1, then the server repeating it (it missed our ACK) every 300 ms:
    // each repeat is answered, and the first five start the tries again, no
    // more.
    let block = pattern(512);
    let data = emit(Packet::Data {
        block: 1,
        data: &block,
    });
    let mut now = Instant::from_secs(1);
    get.receive(&data, now);
    let n = get.transmit(&mut buf, now);
    assert_eq!(parse(&buf[..n]), Packet::Ack { block: 1 });
    let mut answered = 0;
    for _ in 0..200 {
        if get.is_done() {
            break;
        }
        now = now.saturating_add(crate::time::Duration::from_millis(300));
        if get.poll_timeout().is_some_and(|at| now >= at) {
            get.handle_timeout(now);
        }
        get.receive(&data, now);
        bounded_while_let!(1.. = get.transmit(&mut buf, now) => {
            answered += 1;
        });
    }
    assert_eq!(get.outcome(), Some(Err(TftpError::TimedOut)));
    assert!(answered > 5, "the repeats were answered");
    // Six timeouts of a second after the fifth repeat (2.5 s), each seen up to
    // one step late.
    assert!(now <= Instant::from_millis(10_300), "ended at {now:?}");
}

#[test]
fn a_get_whose_acks_are_lost_gives_the_server_its_tries_for_the_next_block() {
    // Seen on a lossy link: DATA 1 comes at 1 s, and the ACKs of it are lost
    // while the server resends it every second; the ACK of the repeat of 4 s
    // gets through and starts the server's tries for DATA 2, whose first sends
    // (4, 5, 6 and 7 s) are lost in turn. The server has tries left when DATA 2
    // arrives at 7.5 s, and so must the get: it gave up at 7 s, six timeouts
    // after DATA 1, while the server was still answering it.
    let mut into = vec![0u8; 4096];
    let mut buf = vec![0u8; 600];
    let mut get = get_asked(&mut into, ClientConfig::DEFAULT, &mut buf, Instant::ZERO);
    let first = pattern(512);
    let data_1 = emit(Packet::Data {
        block: 1,
        data: &first,
    });
    let data_2 = emit(Packet::Data {
        block: 2,
        data: &first[..100],
    });
    let (mut acks, mut outcome) = (Vec::new(), None);
    let mut now = Instant::ZERO;
    while now < Instant::from_secs(9) && outcome.is_none() {
        now = now.saturating_add(crate::time::Duration::from_millis(100));
        if get.poll_timeout().is_some_and(|at| now >= at) {
            get.handle_timeout(now);
        }
        let millis = now.total_millis();
        if millis.is_multiple_of(1000) && (1000..=4000).contains(&millis) {
            get.receive(&data_1, now);
        } else if millis == 7500 {
            get.receive(&data_2, now);
        }
        bounded_while_let!(n @ 1.. = get.transmit(&mut buf, now) => {
            let block = match parse(&buf[..n]) {
                Packet::Ack { block } => Some(block),
                _ => None,
            };
            acks.push((millis, block));
        });
        outcome = get.outcome();
    }
    assert_eq!(outcome, Some(Ok(612)), "at {now:?}, ACKs {acks:?}");
    assert!(
        acks.contains(&(4000, Some(1))),
        "the repeat of 4 s was answered"
    );
}

#[test]
fn a_get_whose_first_answer_is_an_old_block_still_has_a_deadline() {
    let mut into = vec![0u8; 64];
    let mut buf = vec![0u8; 600];
    let mut get = get_asked(&mut into, ClientConfig::DEFAULT, &mut buf, Instant::ZERO);
    // No OACK, and a block from long ago: a duplicate, nothing to answer.
    let at = Instant::from_millis(100);
    get.receive(
        &emit(Packet::Data {
            block: 65535,
            data: &[1, 2, 3],
        }),
        at,
    );
    bounded_while_let!(1.. = get.transmit(&mut buf, at) => {});
    assert_eq!(get.poll_timeout(), Some(at.saturating_add(DEFAULT_TIMEOUT)));
    // And it ends by its tries if nothing more comes.
    for _ in 0..20 {
        let Some(now) = get.poll_timeout() else {
            break;
        };
        get.handle_timeout(now);
        bounded_while_let!(1.. = get.transmit(&mut buf, now) => {});
    }
    assert_eq!(get.outcome(), Some(Err(TftpError::TimedOut)));
}

#[test]
fn a_client_that_answers_each_block_just_in_time_but_too_slowly_is_cut_off() {
    // It asks for 10 s timeouts and acknowledges each 512-byte block after 9 s:
    // never silent, but 57 B/s. A read gets the silent peer's allowance
    // (6 x 10 s) from its request, and 1.024 s more per block acknowledged.
    let shared = shared();
    let file = pattern(512 * 40);
    put_file(&shared, "f", &file);
    let mut server = ServerTransfer::new(&shared, config(512));
    let asking = Options {
        timeout_secs: Some(10),
        ..Options::NONE
    };
    let mut now = Instant::ZERO;
    server.start(&request(RequestKind::Read, b"f", Mode::Octet, asking), now);
    let mut last = Vec::new();
    let mut cut_at = None;
    for _ in 0..100 {
        if !server.is_active() {
            break;
        }
        for datagram in drain(&mut server, now) {
            last = datagram;
        }
        now = now.saturating_add(crate::time::Duration::from_secs(9));
        if server.poll_timeout().is_some_and(|at| now >= at) {
            server.handle_timeout(now);
            if server.stats().too_slow > 0 {
                cut_at.get_or_insert(now);
            }
        }
        // Acknowledge whatever came last: the OACK, then each block.
        let block = match parse(&last) {
            Packet::Oack { .. } => 0,
            Packet::Data { block, .. } => block,
            _ => continue,
        };
        server.receive(&emit(Packet::Ack { block }), now);
    }
    assert!(!server.is_active(), "still held at {now:?}");
    assert_eq!(
        server.outcome(),
        Some(Err(TftpError::TooSlow { rate: 500 }))
    );
    assert!(matches!(
        parse(&last),
        Packet::Error {
            code: ErrorCode::NotDefined,
            ..
        }
    ));
    let stats = server.stats();
    assert_eq!((stats.too_slow, stats.timeouts, stats.completed), (1, 0, 0));
    // 60 s, and 1.024 s for each of the 7 blocks acknowledged by then.
    assert_eq!(cut_at, Some(Instant::from_secs(72)));
}

#[test]
fn an_upload_at_a_steady_pace_above_the_minimum_rate_completes() {
    // 512 B every 0.9 s: 569 B/s, long past the first minute.
    let shared = shared();
    let mut now = Instant::ZERO;
    let mut server = upload_begun(&shared, b"up", now);
    let file = pattern(512 * 150 + 7);
    let blocks: Vec<&[u8]> = file.chunks(512).collect();
    for (i, data) in blocks.iter().enumerate() {
        now = now.saturating_add(crate::time::Duration::from_millis(900));
        if server.poll_timeout().is_some_and(|at| now >= at) {
            server.handle_timeout(now);
        }
        assert!(server.is_active(), "cut off at block {i}, {now:?}");
        let block = (i + 1) as u16;
        server.receive(&emit(Packet::Data { block, data }), now);
        drain(&mut server, now);
    }
    assert_eq!(server.outcome(), Some(Ok(file.len() as u64)));
    assert!(now > Instant::from_secs(130));
    assert_eq!(read_file(&shared, "up").as_deref(), Some(&file[..]));
    assert_eq!(server.stats().too_slow, 0);
}

#[test]
fn a_client_that_goes_silent_after_the_oack_is_timed_out_not_too_slow() {
    let shared = shared();
    put_file(&shared, "f", &pattern(512 * 40));
    let mut server = ServerTransfer::new(&shared, config(512));
    let asking = Options {
        block_size: Some(512),
        ..Options::NONE
    };
    server.start(
        &request(RequestKind::Read, b"f", Mode::Octet, asking),
        Instant::ZERO,
    );
    drain(&mut server, Instant::ZERO);
    let mut now = Instant::from_millis(500);
    server.receive(&emit(Packet::Ack { block: 0 }), now);
    drain(&mut server, now);
    for _ in 0..20 {
        let Some(at) = server.poll_timeout() else {
            break;
        };
        now = at;
        server.handle_timeout(now);
        drain(&mut server, now);
    }
    assert!(!server.is_active());
    let stats = *server.stats();
    assert_eq!(server.outcome(), Some(Err(TftpError::TimedOut)));
    assert_eq!((stats.timeouts, stats.too_slow), (1, 0), "{stats}");
}

#[test]
fn a_server_repeating_its_last_block_cannot_hold_a_get_dallying_for_ever() {
    let data = pattern(100);
    let mut into = [0u8; 100];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig {
            transfer_size: false,
            ..ClientConfig::DEFAULT
        },
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    let n = client.transmit(&mut buf, Instant::ZERO);
    assert!(n > 0, "RRQ");
    let block = emit(Packet::Data {
        block: 1,
        data: &data,
    });
    client.receive(&block, Instant::ZERO);
    let n = client.transmit(&mut buf, Instant::ZERO);
    assert_eq!(parse(&buf[..n]), Packet::Ack { block: 1 });
    assert_eq!(client.outcome(), Some(Ok(100)));
    let dally = client.poll_timeout().unwrap();
    // The server sends its last block again every second, for an hour.
    let mut now = Instant::ZERO;
    for _ in 0..3600 {
        now = now.saturating_add(crate::time::Duration::from_secs(1));
        if client.poll_timeout().is_some_and(|t| now >= t) {
            client.handle_timeout(now);
        }
        if client.is_done() {
            break;
        }
        client.receive(&block, now);
        bounded_while_let!(1.. = client.transmit(&mut buf, now) => {});
    }
    assert!(
        client.is_done(),
        "still dallying at {now:?}, first dally end was {dally:?}"
    );
}

#[test]
fn an_oack_with_an_out_of_range_blksize_is_refused_not_taken_as_512() {
    let mut into = [0u8; 1024];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig {
            block_size: Some(1024),
            transfer_size: false,
            ..ClientConfig::DEFAULT
        },
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let mut buf = [0u8; 1100];
    client.transmit(&mut buf, Instant::ZERO);
    // blksize 4 is below RFC 2348's 8: not a grant of anything asked.
    client.receive(b"\x00\x06blksize\x004\x00", Instant::ZERO);
    let n = client.transmit(&mut buf, Instant::ZERO);
    let answer = format!("{:?}", parse(&buf[..n]));
    // The server then sends the file in the 4-byte blocks it announced.
    client.receive(b"\x00\x03\x00\x01abcd", Instant::ZERO);
    client.transmit(&mut buf, Instant::ZERO);
    assert_eq!(
        client.outcome(),
        Some(Err(TftpError::BadOptions)),
        "answer to the OACK was {answer:?}; sink holds {:?}",
        client.sink().data()
    );
}

#[test]
fn a_get_dallies_long_enough_for_a_server_with_a_longer_timeout() {
    // The server retransmits every 3 s; the get's own dally is 6 s. Each
    // repeat puts the dally off, so the one at 6 s is still answered.
    let shared = shared();
    let data = pattern(1000);
    put_file(&shared, "f", &data);
    let mut server = ServerTransfer::new(
        &shared,
        ServerConfig {
            timeout: crate::time::Duration::from_secs(3),
            ..config(512)
        },
    );
    let mut into = [0u8; 1000];
    let mut client = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig::DEFAULT,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    let now = Instant::ZERO;
    let n = client.transmit(&mut buf, now);
    server.start(&buf[..n], now);
    for _ in 0..10 {
        for d in drain(&mut server, now) {
            client.receive(&d, now);
        }
        let n = client.transmit(&mut buf, now);
        if client.is_dallying() {
            break; // the final ACK is lost
        }
        server.receive(&buf[..n], now);
    }
    assert_eq!(client.outcome(), Some(Ok(1000)));
    // A repeat at 3 s, its ACK lost; another at 6 s, its ACK through.
    let mut answered = 0;
    for k in 1..=2u64 {
        let at = server.poll_timeout().unwrap();
        assert_eq!(at, Instant::from_secs(3 * k));
        if client.poll_timeout().is_some_and(|t| at >= t) {
            client.handle_timeout(at);
        }
        server.handle_timeout(at);
        for d in drain(&mut server, at) {
            client.receive(&d, at);
        }
        let n = client.transmit(&mut buf, at);
        if n > 0 {
            answered += 1;
            if k == 2 {
                server.receive(&buf[..n], at);
            }
        }
    }
    assert_eq!(
        answered, 2,
        "each repeat of the last block is acknowledged again"
    );
    assert_eq!(server.outcome(), Some(Ok(1000)), "the server ends clean");
}

#[test]
fn a_client_repeating_its_last_data_cannot_hold_a_dallying_upload_for_ever() {
    let shared = shared();
    let mut now = Instant::ZERO;
    let mut server = upload_begun(&shared, b"up", now);
    let last = emit(Packet::Data {
        block: 1,
        data: b"tail",
    });
    server.receive(&last, now);
    assert_eq!(parse(&drain(&mut server, now)[0]), Packet::Ack { block: 1 });
    assert!(server.is_dallying());
    for _ in 0..300 {
        now = now.saturating_add(crate::time::Duration::from_secs(2));
        if server.poll_timeout().is_some_and(|at| now >= at) {
            server.handle_timeout(now);
        }
        if !server.is_active() {
            break;
        }
        server.receive(&last, now);
        drain(&mut server, now);
    }
    assert!(!server.is_active(), "still dallying at {now:?}");
    // Six repeats put the end off by a dally (6 s) each, the rest do not.
    assert_eq!(now, Instant::from_secs(18));
    assert_eq!(server.outcome(), Some(Ok(4)), "the upload is complete");
}
/// `std_net::get` of "f" from `server` into `into`, asking for blocks of
/// `block_size` and no `tsize`.
#[cfg(feature = "std")]
fn std_get(
    server: std::net::SocketAddr,
    block_size: u16,
    into: &mut [u8],
) -> Result<u64, std_net::StdError> {
    let config = ClientConfig {
        block_size: Some(block_size),
        transfer_size: false,
        ..ClientConfig::DEFAULT
    };
    let name = FileName::new("f").unwrap();
    std_net::get(server, name, config, SliceSink::new(into), |_, _| {})
}

#[cfg(all(feature = "std", target_os = "linux"))]
#[test]
fn a_signal_while_a_std_get_waits_does_not_end_it() {
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    extern "C" fn ignore(_: libc::c_int) {}
    // A handler that does nothing, as a program's SIGWINCH or SIGCHLD handler
    // might: a receive with a timeout returns EINTR however it was installed.
    #[allow(unsafe_code)]
    // SAFETY: a zeroed sigaction is valid, and the handler is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    // A server that takes the request and never answers: the get ends with
    // its own verdict after its tries, signals or none.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = ClientConfig {
        timeout: crate::time::Duration::from_millis(100),
        max_tries: 2,
        ..ClientConfig::DEFAULT
    };
    #[allow(unsafe_code)]
    // SAFETY: no precondition.
    let this_thread = unsafe { libc::pthread_self() };
    let done = Arc::new(AtomicBool::new(false));
    let signaller = {
        let done = Arc::clone(&done);
        // Ends when the get has ended, which its own timeouts bound, or after
        // 2,000 signals (10 s) at most, so that a get whose wait began again
        // with every signal still ends.
        std::thread::spawn(move || {
            for _ in 0..2_000 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                #[allow(unsafe_code)]
                // SAFETY: the test's thread outlives this one (it joins it).
                unsafe {
                    libc::pthread_kill(this_thread, libc::SIGUSR1);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let mut into = [0u8; 64];
    let got = std_net::get(
        silent.local_addr().unwrap(),
        FileName::new("boot.cfg").unwrap(),
        config,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    done.store(true, Ordering::SeqCst);
    signaller.join().unwrap();
    assert!(
        matches!(got, Err(std_net::StdError::Tftp(TftpError::TimedOut))),
        "{got:?}"
    );
}

#[cfg(feature = "std")]
#[test]
fn a_get_that_asked_for_small_blocks_is_not_handed_a_cut_file_as_complete() {
    use std::net::UdpSocket;
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = listen.local_addr().unwrap();
    let file = pattern(700);
    let served = file.clone();
    // A server of RFC 1350 alone: it ignores blksize and sends 512-byte blocks.
    let server = std::thread::spawn(move || {
        let transfer = UdpSocket::bind("127.0.0.1:0").unwrap();
        transfer
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        listen
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let mut buf = [0u8; 1024];
        let (_, client) = listen.recv_from(&mut buf).ok()?;
        let mut data = vec![0, 3, 0, 1];
        data.extend_from_slice(&served[..512]);
        transfer.send_to(&data, client).unwrap();
        let answer = transfer
            .recv_from(&mut buf)
            .ok()
            .map(|(n, _)| buf[..n].to_vec());
        if answer.as_deref() == Some(&[0, 4, 0, 1]) {
            let mut data = vec![0, 3, 0, 2];
            data.extend_from_slice(&served[512..]);
            transfer.send_to(&data, client).unwrap();
            let _ = transfer.recv_from(&mut buf);
        }
        answer
    });
    let mut into = vec![0u8; 1024];
    let result = std_get(server_addr, 100, &mut into);
    let answer = server.join().unwrap();
    assert!(
        matches!(
            result,
            Err(std_net::StdError::Tftp(TftpError::BlockSizeIgnored {
                asked: 100
            }))
        ),
        "{result:?}"
    );
    // The server is told why: option negotiation failed.
    let answer = answer.expect("an answer to the DATA");
    assert_eq!(
        error_code(&answer),
        Some(ErrorCode::OptionRefused),
        "{answer:?}"
    );
}

/// A get of "f" asking for `block_size`, whose RRQ went out.
fn get_asking(into: &mut [u8], block_size: u16) -> ClientGet<SliceSink<'_>, fn(u64, Option<u64>)> {
    let config = ClientConfig {
        block_size: Some(block_size),
        transfer_size: false,
        ..ClientConfig::DEFAULT
    };
    get_asked(into, config, &mut [0u8; 600], Instant::ZERO)
}

#[test]
fn a_get_that_asked_for_blocks_under_512_refuses_a_server_that_ignores_blksize() {
    let mut buf = [0u8; 600];
    // A plain DATA (the server took no option) of at least the block asked:
    // cut to a buffer of `4 +` it, `5 +` it, or whole.
    for len in [100, 101, 200, 512] {
        let mut into = [0u8; 1024];
        let mut get = get_asking(&mut into, 100);
        let data = pattern(len);
        get.receive(
            &emit(Packet::Data {
                block: 1,
                data: &data,
            }),
            Instant::ZERO,
        );
        let n = get.transmit(&mut buf, Instant::ZERO);
        assert_eq!(
            error_code(&buf[..n]),
            Some(ErrorCode::OptionRefused),
            "{len}"
        );
        assert_eq!(
            get.outcome(),
            Some(Err(TftpError::BlockSizeIgnored { asked: 100 }))
        );
        assert!(get.sink().data().is_empty(), "nothing stored");
    }
    // An OACK without blksize is judged by its tsize or the DATA that follows:
    // a_get_through_an_oack_without_blksize_takes_a_small_file_and_refuses_a_cut_block.
    // A get that asked for 512 or more takes RFC 1350's blocks.
    let mut into = [0u8; 1024];
    let mut get = get_asking(&mut into, 1024);
    get.receive(
        &emit(Packet::Data {
            block: 1,
            data: b"short",
        }),
        Instant::ZERO,
    );
    get.transmit(&mut buf, Instant::ZERO);
    assert_eq!(get.outcome(), Some(Ok(5)));
}

#[test]
fn a_get_of_a_small_file_from_an_rfc_1350_server_still_completes() {
    let mut buf = [0u8; 600];
    let mut into = [0u8; 1024];
    let mut get = get_asking(&mut into, 100);
    get.receive(
        &emit(Packet::Data {
            block: 1,
            data: b"tiny file",
        }),
        Instant::ZERO,
    );
    let n = get.transmit(&mut buf, Instant::ZERO);
    assert_eq!(parse(&buf[..n]), Packet::Ack { block: 1 });
    assert_eq!(get.outcome(), Some(Ok(9)));
    assert_eq!(get.sink().data(), b"tiny file");
    // One byte under the block asked: no buffer of `4 +` it cut that.
    let mut into = [0u8; 1024];
    let mut get = get_asking(&mut into, 100);
    let data = pattern(99);
    get.receive(
        &emit(Packet::Data {
            block: 1,
            data: &data,
        }),
        Instant::ZERO,
    );
    get.transmit(&mut buf, Instant::ZERO);
    assert_eq!(get.outcome(), Some(Ok(99)));
}

#[test]
fn a_get_through_an_oack_without_blksize_takes_a_small_file_and_refuses_a_cut_block() {
    let mut buf = [0u8; 600];
    // The OACK is accepted (ACK 0); the DATA that follows decides.
    for (len, outcome) in [
        (9, Ok(9)),
        (100, Err(TftpError::BlockSizeIgnored { asked: 100 })),
        (105, Err(TftpError::BlockSizeIgnored { asked: 100 })),
    ] {
        let mut into = [0u8; 1024];
        let mut get = get_asking(&mut into, 100);
        get.receive(b"\x00\x06", Instant::ZERO);
        let n = get.transmit(&mut buf, Instant::ZERO);
        assert_eq!(parse(&buf[..n]), Packet::Ack { block: 0 }, "{len}");
        let data = pattern(len);
        get.receive(
            &emit(Packet::Data {
                block: 1,
                data: &data,
            }),
            Instant::ZERO,
        );
        let n = get.transmit(&mut buf, Instant::ZERO);
        match outcome {
            Ok(_) => assert_eq!(parse(&buf[..n]), Packet::Ack { block: 1 }, "{len}"),
            Err(_) => {
                assert_eq!(
                    error_code(&buf[..n]),
                    Some(ErrorCode::OptionRefused),
                    "{len}"
                );
                assert!(get.sink().data().is_empty(), "nothing stored");
            }
        }
        assert_eq!(get.outcome(), Some(outcome), "{len}");
    }
    // A tsize of at least the block asked says at once that it cannot fit.
    let mut into = [0u8; 1024];
    let config = ClientConfig {
        block_size: Some(100),
        ..ClientConfig::DEFAULT
    };
    let mut get = get_asked(&mut into, config, &mut buf, Instant::ZERO);
    let options = Options {
        transfer_size: Some(100),
        ..Options::NONE
    };
    get.receive(&emit(Packet::Oack { options }), Instant::ZERO);
    let n = get.transmit(&mut buf, Instant::ZERO);
    assert!(matches!(
        parse(&buf[..n]),
        Packet::Error {
            code: ErrorCode::OptionRefused,
            ..
        }
    ));
    assert_eq!(
        get.outcome(),
        Some(Err(TftpError::BlockSizeIgnored { asked: 100 }))
    );
}

#[test]
fn a_put_through_a_plain_ack_0_sends_a_file_smaller_than_the_block_asked_and_refuses_a_larger() {
    let mut buf = [0u8; 600];
    let config = ClientConfig {
        block_size: Some(100),
        ..ClientConfig::DEFAULT
    };
    for len in [0, 9, 99, 100, 300] {
        let data = pattern(len);
        let mut put = ClientPut::new(FileName::new("f").unwrap(), config, &data[..], |_, _| {});
        assert!(put.transmit(&mut buf, Instant::ZERO) > 0, "the WRQ");
        put.receive(&emit(Packet::Ack { block: 0 }), Instant::ZERO);
        let n = put.transmit(&mut buf, Instant::ZERO);
        if len < 100 {
            // One DATA, short of 512: the last block to any server.
            assert_eq!(
                parse(&buf[..n]),
                Packet::Data {
                    block: 1,
                    data: &data
                },
                "{len}"
            );
            put.receive(&emit(Packet::Ack { block: 1 }), Instant::ZERO);
            assert_eq!(put.outcome(), Some(Ok(len as u64)), "{len}");
        } else {
            assert_eq!(
                error_code(&buf[..n]),
                Some(ErrorCode::OptionRefused),
                "{len}"
            );
            assert_eq!(
                put.outcome(),
                Some(Err(TftpError::BlockSizeIgnored { asked: 100 })),
                "{len}"
            );
        }
    }
}

#[test]
fn a_timeout_that_is_not_a_whole_number_of_seconds_is_not_sent() {
    // ClientConfig::timeout: "sent as the `timeout` option when it is a whole
    // number of seconds from 1 to 255 and `send_timeout` is set".
    let mut into = [0u8; 16];
    let mut get: ClientGet<SliceSink<'_>, fn(u64, Option<u64>)> = ClientGet::new(
        FileName::new("f").unwrap(),
        ClientConfig {
            timeout: crate::time::Duration::from_millis(1500),
            send_timeout: true,
            ..ClientConfig::DEFAULT
        },
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    let n = get.transmit(&mut buf, Instant::ZERO);
    let Packet::Request { options, .. } = parse(&buf[..n]) else {
        panic!("an RRQ");
    };
    assert_eq!(
        options.timeout_secs, None,
        "a 1.5 s timeout was announced as {:?} s",
        options.timeout_secs
    );
}

/// Asserts that a get with `config` answers `oack` with ERROR 8 and ends
/// with `TftpError::BadOptions`.
fn a_get_refuses(config: ClientConfig, oack: &[u8]) {
    let (mut into, mut buf) = ([0u8; 1024], [0u8; 600]);
    let mut get = get_asked(&mut into, config, &mut buf, Instant::ZERO);
    get.receive(oack, Instant::ZERO);
    let n = get.transmit(&mut buf, Instant::ZERO);
    assert_eq!(
        error_code(&buf[..n]),
        Some(ErrorCode::OptionRefused),
        "{oack:?} answered with {:?}",
        parse(&buf[..n])
    );
    assert_eq!(get.outcome(), Some(Err(TftpError::BadOptions)), "{oack:?}");
}

#[test]
fn a_get_refuses_an_oack_with_options_it_did_not_ask_for() {
    // TftpError::BadOptions: "The peer acknowledged options that were not
    // asked for"; RFC 2347: an OACK holds only options the client asked for.
    let nothing = ClientConfig {
        transfer_size: false,
        send_timeout: false,
        ..ClientConfig::DEFAULT
    };
    for oack in [
        &b"\x00\x06tsize\x003\x00"[..],
        &b"\x00\x06timeout\x00200\x00"[..],
        &b"\x00\x06multicast\x00,1,1\x00"[..],
    ] {
        a_get_refuses(nothing, oack);
    }
}

#[test]
fn a_get_refuses_an_oack_that_names_an_option_twice() {
    let blocks = ClientConfig {
        block_size: Some(1024),
        ..ClientConfig::DEFAULT
    };
    for oack in [
        // An invalid value first: the one parsed is the valid second.
        &b"\x00\x06blksize\x0099999\x00blksize\x001024\x00"[..],
        &b"\x00\x06blksize\x001024\x00blksize\x00512\x00"[..],
    ] {
        a_get_refuses(blocks, oack);
    }
}

/// The async server, polled by hand: datagrams in queues, a clock set by the
/// test.
#[cfg(feature = "embedded-io-async")]
mod async_server {
    use super::*;
    use crate::asynch::{Clock, DatagramSocket};
    use crate::tftp::asynch::{Server, TransferSocket};
    use core::cell::{Cell, RefCell};
    use core::task::{Context, Poll, Waker};
    use std::collections::VecDeque;
    use std::rc::Rc;

    /// Datagrams: the bytes, the sender's port, the port they are sent to.
    type Queue = Rc<RefCell<VecDeque<(Vec<u8>, u16, u16)>>>;

    /// A socket on one host; ports are the addresses. It takes what is sent to
    /// its port and drops what was sent to another (a closed port); `binds`
    /// says whether it may move to another port.
    struct Sock {
        port: Rc<Cell<u16>>,
        inbox: Queue,
        outbox: Queue,
        binds: bool,
    }

    impl DatagramSocket for Sock {
        type Addr = u16;
        type Error = ();
        async fn send_to(&mut self, datagram: &[u8], to: u16) -> Result<(), ()> {
            let from = self.port.get();
            self.outbox
                .borrow_mut()
                .push_back((datagram.to_vec(), from, to));
            Ok(())
        }
        async fn recv_from(&mut self, buf: &mut [u8]) -> Result<(usize, u16), ()> {
            core::future::poll_fn(|_| {
                loop {
                    let Some((d, from, to)) = self.inbox.borrow_mut().pop_front() else {
                        return Poll::Pending;
                    };
                    if to == self.port.get() {
                        buf[..d.len()].copy_from_slice(&d);
                        return Poll::Ready(Ok((d.len(), from)));
                    }
                }
            })
            .await
        }
        fn same_host(_: &u16, _: &u16) -> bool {
            true
        }
    }

    impl TransferSocket for Sock {
        fn rebind(&mut self, port: u16) -> bool {
            if self.binds {
                self.port.set(port);
            }
            self.binds
        }
    }

    struct ManualClock(Cell<Instant>);

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.0.get()
        }
        async fn sleep_until(&self, at: Instant) {
            core::future::poll_fn(|_| {
                if self.0.get() >= at {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await
        }
    }

    const CLIENT: u16 = 50_000;

    /// The two sockets' queues and the transfer socket's port.
    struct Wires {
        to_69: Queue,
        from_69: Queue,
        to_transfer: Queue,
        from_transfer: Queue,
        port: Rc<Cell<u16>>,
    }

    impl Wires {
        /// Sends `datagram` from the client to port 69.
        fn request(&self, datagram: Vec<u8>) {
            self.to_69.borrow_mut().push_back((datagram, CLIENT, PORT));
        }
        /// Sends `datagram` from the client to `port`.
        fn to(&self, port: u16, datagram: Vec<u8>) {
            self.to_transfer
                .borrow_mut()
                .push_back((datagram, CLIENT, port));
        }
        /// What the transfer socket sent: each datagram and its port.
        fn sent(&self) -> Vec<(Vec<u8>, u16)> {
            let mut sent = self.from_transfer.borrow_mut();
            sent.drain(..).map(|(d, from, _)| (d, from)).collect()
        }
    }

    /// Runs `script` beside a server of `shared` whose transfer socket can be
    /// bound to a new port if `binds`; `script` gets the wires and a function
    /// that runs the server until it waits. Returns the server's counters.
    fn serve(
        shared: &SharedStore<Store>,
        binds: bool,
        script: impl FnOnce(&Wires, &ManualClock, &mut dyn FnMut()),
    ) -> TftpStats {
        let queue = || Queue::default();
        let wires = Wires {
            to_69: queue(),
            from_69: queue(),
            to_transfer: queue(),
            from_transfer: queue(),
            port: Rc::new(Cell::new(6969)),
        };
        let mut listen = Sock {
            port: Rc::new(Cell::new(PORT)),
            inbox: wires.to_69.clone(),
            outbox: wires.from_69.clone(),
            binds: false,
        };
        let mut transfer = Sock {
            port: wires.port.clone(),
            inbox: wires.to_transfer.clone(),
            outbox: wires.from_transfer.clone(),
            binds,
        };
        let clock = ManualClock(Cell::new(Instant::ZERO));
        let mut server = Server::new(shared, ServerConfig::DEFAULT);
        let (mut request, mut datagram) = ([0u8; 516], [0u8; 517]);
        {
            let run = server.run(
                &mut listen,
                &mut transfer,
                &clock,
                &mut request,
                &mut datagram,
            );
            let mut run = core::pin::pin!(run);
            let mut cx = Context::from_waker(Waker::noop());
            // The server never ends; a few polls take what waits and answer it.
            let mut turn = || {
                for _ in 0..10 {
                    let _ = run.as_mut().poll(&mut cx);
                }
            };
            script(&wires, &clock, &mut turn);
        }
        server.stats()
    }

    #[test]
    fn a_late_data_of_an_upload_is_not_taken_into_the_next_upload_from_the_same_port() {
        let owned = shared();
        let shared: &SharedStore<Store> = &owned;
        let (a, b) = (vec![b'A'; 100], vec![b'B'; 100]);
        let wrq = |name: &[u8]| request(RequestKind::Write, name, Mode::Octet, Options::NONE);
        serve(shared, true, |wires, clock, turn| {
            // Upload "a" (one short block) from the client's port.
            wires.request(wrq(b"a"));
            turn();
            let first = wires.port.get();
            assert!(first >= 49152, "a transfer port of its own: {first}");
            assert_eq!(wires.sent(), [(vec![0, 4, 0, 0], first)]);
            let data_a = emit(Packet::Data { block: 1, data: &a });
            wires.to(first, data_a.clone());
            turn();
            assert_eq!(wires.sent(), [(vec![0, 4, 0, 1], first)]);
            // The client had sent its DATA 1 again (the ACK was late); it has
            // the ACK now and, from the same port, uploads "b". Its DATA 1 of
            // "a" comes in after the WRQ.
            clock.0.set(Instant::from_millis(1100));
            wires.request(wrq(b"b"));
            turn();
            let second = wires.port.get();
            assert_ne!(second, first, "a new port for the new transfer");
            assert_eq!(wires.sent(), [(vec![0, 4, 0, 0], second)]);
            wires.to(first, data_a);
            turn();
            assert_eq!(wires.sent(), [], "the old port is closed");
            wires.to(second, emit(Packet::Data { block: 1, data: &b }));
            turn();
            assert_eq!(wires.sent(), [(vec![0, 4, 0, 1], second)]);
        });
        assert_eq!(read_file(shared, "a"), Some(a));
        assert_eq!(read_file(shared, "b"), Some(b));
    }

    #[test]
    fn a_repeated_request_is_a_duplicate_and_another_from_the_same_port_a_new_transfer() {
        let owned = shared();
        let shared: &SharedStore<Store> = &owned;
        put_file(shared, "a", &[b'A'; 100]);
        put_file(shared, "b", &[b'B'; 100]);
        let rrq = |name: &[u8]| request(RequestKind::Read, name, Mode::Octet, Options::NONE);
        let stats = serve(shared, true, |wires, _, turn| {
            wires.request(rrq(b"a"));
            turn();
            let first = wires.port.get();
            let sent = wires.sent();
            assert_eq!((&sent[0].0[..4], sent.len()), (&[0, 3, 0, 1][..], 1));
            // The same request again: the transfer runs on, on its port.
            wires.request(rrq(b"a"));
            turn();
            assert_eq!((wires.sent(), wires.port.get()), (vec![], first));
            // The final ACK of "a" is lost, and the client asks for "b" from
            // the same port: "b" it gets, from a new port.
            wires.request(rrq(b"b"));
            turn();
            let second = wires.port.get();
            assert_ne!(second, first);
            let sent = wires.sent();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].1, second);
            assert_eq!(sent[0].0[..4], [0, 3, 0, 1]);
            assert_eq!(sent[0].0[4..], [b'B'; 100], "the new file, not the old one");
        });
        assert_eq!(stats.duplicates, 1, "{stats}");
    }

    #[test]
    fn a_request_that_finds_no_port_to_bind_is_refused_with_an_error() {
        let owned = shared();
        let shared: &SharedStore<Store> = &owned;
        put_file(shared, "a", &[b'A'; 100]);
        let stats = serve(shared, false, |wires, _, turn| {
            wires.request(request(RequestKind::Read, b"a", Mode::Octet, Options::NONE));
            turn();
            assert_eq!(wires.sent(), [], "no transfer");
            let refused = wires.from_69.borrow_mut().pop_front().expect("an answer");
            assert_eq!((&refused.0[..4], refused.2), (&[0, 5, 0, 0][..], CLIENT));
        });
        // TftpStats::failed: "every cause below, and refusals".
        assert_eq!((stats.refused, stats.failed), (1, 1), "{stats}");
    }
}

#[test]
fn a_refused_request_counts_as_failed_and_gives_an_outcome() {
    // TftpStats::failed: "every cause below, and refusals".
    let shared = shared();
    let mut server = ServerTransfer::new(&shared, config(512));
    let asked = request(RequestKind::Read, b"nothing", Mode::Octet, Options::NONE);
    server.start(&asked, Instant::ZERO);
    let out = drain(&mut server, Instant::ZERO);
    assert_eq!(error_code(&out[0]), Some(ErrorCode::FileNotFound));
    let stats = *server.stats();
    assert_eq!(
        (stats.reads, stats.refused, stats.failed),
        (1, 1, 1),
        "{stats}"
    );
    assert_eq!(
        server.outcome(),
        Some(Err(TftpError::Store(StoreError::NotFound)))
    );
}

#[test]
fn a_data_ahead_of_a_lost_block_is_counted_when_dropped() {
    let shared = shared();
    let now = Instant::ZERO;
    let mut server = upload_begun(&shared, b"w", now);
    let before = *server.stats();
    server.receive(
        &emit(Packet::Data {
            block: 2,
            data: &[1u8; 512],
        }),
        now,
    );
    let out = drain(&mut server, now);
    assert_eq!(parse(&out[0]), Packet::Ack { block: 0 });
    let after = *server.stats();
    assert_eq!(after.malformed, before.malformed + 1, "{after}");
}

#[test]
fn every_block_of_a_window_sent_again_is_a_retransmit() {
    let shared = shared();
    put_file(&shared, "f", &pattern(5000));
    let mut server = ServerTransfer::new(&shared, config(512));
    let now = Instant::ZERO;
    let asked = Options {
        window_size: Some(4),
        ..Options::NONE
    };
    server.start(&request(RequestKind::Read, b"f", Mode::Octet, asked), now);
    assert_eq!(drain(&mut server, now).len(), 1, "the OACK");
    server.receive(&emit(Packet::Ack { block: 0 }), now);
    assert_eq!(drain(&mut server, now).len(), 4, "a window of 4 DATA");
    // An ACK inside the window (RFC 7440): the blocks after it go again.
    server.receive(&emit(Packet::Ack { block: 2 }), now);
    assert_eq!(drain(&mut server, now).len(), 4, "blocks 3 to 6");
    assert_eq!(server.stats().retransmits, 2, "{}", server.stats());
    // A timeout: the whole window goes again.
    let later = server.poll_timeout().unwrap();
    server.handle_timeout(later);
    assert_eq!(drain(&mut server, later).len(), 4);
    assert_eq!(server.stats().retransmits, 6, "{}", server.stats());
}

#[cfg(feature = "std")]
#[test]
fn a_std_get_asking_for_blocks_of_8_bytes_sends_its_request() {
    use std::net::UdpSocket;
    use std::time::Duration as StdDuration;
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = listen.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let transfer = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&listen, &transfer] {
            s.set_read_timeout(Some(StdDuration::from_secs(3))).unwrap();
        }
        let mut buf = [0u8; 600];
        let (_, client) = listen.recv_from(&mut buf).ok()?;
        transfer.send_to(b"\0\x06blksize\08\0", client).unwrap();
        let (n, _) = transfer.recv_from(&mut buf).ok()?;
        assert_eq!(&buf[..n], &[0, 4, 0, 0]);
        transfer.send_to(b"\0\x03\0\x01hello", client).unwrap();
        let (n, _) = transfer.recv_from(&mut buf).ok()?;
        Some(buf[..n].to_vec())
    });
    let mut into = [0u8; 16];
    let result = std_get(server_addr, 8, &mut into);
    let last_ack = server.join().unwrap();
    assert!(matches!(result, Ok(5)), "{result:?}");
    assert_eq!(last_ack.as_deref(), Some(&[0u8, 4, 0, 1][..]));
}

#[test]
fn an_abandoned_transfer_partial_gives_way_to_a_wrq_too() {
    // A transfer client announced the whole store in a PUT and went away: its
    // partial, which no upload holds, would keep every byte of the store.
    let shared = shared();
    shared
        .with_store(|s| {
            let hog = FileName::new("hog").unwrap();
            s.begin_upload(&hog, 200_000, false).unwrap();
        })
        .unwrap();
    let mut server = ServerTransfer::new(&shared, config(512));
    let options = Options {
        transfer_size: Some(1000),
        ..Options::NONE
    };
    let wrq = request(RequestKind::Write, b"boot.bin", Mode::Octet, options);
    server.start(&wrq, Instant::ZERO);
    let out = drain(&mut server, Instant::ZERO);
    assert_eq!(error_code(&out[0]), None, "refused: {:?}", server.outcome());
    assert_eq!(shared.stats().partials_discarded, 1);
}

#[test]
fn an_error_is_told_by_its_opcode_alone() {
    // RFC 1350: an ERROR is never answered, however the rest of it reads.
    assert!(is_error(&emit(Packet::Error {
        code: ErrorCode::UnknownTid,
        message: b"unknown transfer ID",
    })));
    for error in [&[0u8, 5][..], b"\0\x05\0\x01oops"] {
        assert!(is_error(error), "{error:?}");
    }
    for datagram in [&[0u8, 4, 0, 1][..], &[0, 3, 0, 1, 7], &[0], &[]] {
        assert!(!is_error(datagram), "{datagram:?}");
    }
}

#[test]
fn an_error_the_parser_refuses_is_not_answered_by_the_transfer_either() {
    let shared = shared();
    put_file(&shared, "f", &pattern(2000));
    let now = Instant::ZERO;
    // No NUL after the message, bytes after it, a code cut short.
    for error in [
        &b"\0\x05\0\x01oops"[..],
        b"\0\x05\0\x01oops\0\0",
        b"\0\x05\0",
    ] {
        let mut server = ServerTransfer::new(&shared, config(512));
        let rrq = request(RequestKind::Read, b"f", Mode::Octet, Options::NONE);
        server.start(&rrq, now);
        drain(&mut server, now);
        server.receive(error, now);
        assert_eq!(
            drain(&mut server, now),
            Vec::<Vec<u8>>::new(),
            "server, {error:?}"
        );
        assert!(!server.is_active(), "{error:?}");

        let (mut into, mut buf) = ([0u8; 64], [0u8; 600]);
        let mut get = get_asked(&mut into, ClientConfig::DEFAULT, &mut buf, now);
        get.receive(error, now);
        let sent = get.transmit(&mut buf, now);
        assert_eq!(sent, 0, "client get, {error:?}: {:?}", get.outcome());
    }
}

/// A put that completed (Ok, counted completed) must stay done: a stray
/// malformed datagram from the server's port afterwards must not send the
/// server an ERROR nor turn the outcome into a failure.
#[test]
fn a_finished_put_is_not_revived_by_a_malformed_datagram() {
    let shared = shared();
    let data = pattern(100);
    let mut server = ServerTransfer::new(&shared, config(512));
    let mut put = ClientPut::new(
        FileName::new("f").unwrap(),
        ClientConfig::DEFAULT,
        &data[..],
        |_, _| {},
    );
    let now = Instant::ZERO;
    let mut buf = [0u8; 600];
    let n = put.transmit(&mut buf, now);
    server.start(&buf[..n], now);
    for _ in 0..10 {
        for d in drain(&mut server, now) {
            put.receive(&d, now);
        }
        bounded_while_let!(n @ 1.. = put.transmit(&mut buf, now) => {
            server.receive(&buf[..n], now);
        });
        if put.is_done() {
            break;
        }
    }
    assert!(put.is_done());
    assert_eq!(put.outcome(), Some(Ok(100)));
    assert_eq!(read_file(&shared, "f").as_deref(), Some(&data[..]));
    // A truncated ACK from the server's port, after the end.
    put.receive(b"\0\x04\0", now);
    let sent = put.transmit(&mut buf, now);
    let stats = *put.stats();
    assert_eq!(
        (
            sent,
            put.outcome(),
            put.is_done(),
            stats.completed,
            stats.failed
        ),
        (0, None, true, 1, 0),
        "sent {:?}; {stats}",
        &buf[..sent]
    );
}

/// RFC 1350: an ERROR is never answered. `ServerTransfer::start` is public and
/// is handed whatever came to port 69.
#[test]
fn a_transfer_started_with_an_error_datagram_sends_no_error() {
    let shared = shared();
    let mut server = ServerTransfer::new(&shared, config(512));
    let error = emit(Packet::Error {
        code: ErrorCode::UnknownTid,
        message: b"unknown transfer ID",
    });
    server.start(&error, Instant::ZERO);
    let out = drain(&mut server, Instant::ZERO);
    assert!(out.is_empty(), "answered an ERROR with {out:?}");
    // Counted, and no transfer began.
    let stats = *server.stats();
    assert_eq!((stats.malformed, stats.refused, stats.failed), (1, 0, 0));
    assert!(!server.is_active());
    assert_eq!(server.outcome(), None);
}

/// A get of a 1000-byte file with 512-byte blocks (asked for, so the server
/// answers with an OACK), its own timeout 7 s against the server's 1 s and 5
/// tries; the one ACK `lost` goes missing once. The get's and the server's
/// outcomes.
fn get_losing_one_ack(lost: [u8; 4]) -> [Option<Result<u64, TftpError>>; 2] {
    let shared = shared();
    let data = pattern(1000);
    put_file(&shared, "f", &data);
    let mut server = ServerTransfer::new(&shared, config(512));
    let mut into = [0u8; 1000];
    let client_config = ClientConfig {
        block_size: Some(512),
        timeout: crate::time::Duration::from_secs(7),
        ..ClientConfig::DEFAULT
    };
    let mut get = ClientGet::new(
        FileName::new("f").unwrap(),
        client_config,
        SliceSink::new(&mut into),
        |_, _| {},
    );
    let mut buf = [0u8; 600];
    let mut now = Instant::ZERO;
    let n = get.transmit(&mut buf, now);
    server.start(&buf[..n], now);
    let mut was_lost = false;
    let mut outcome = None;
    for _ in 0..400 {
        now = now.saturating_add(crate::time::Duration::from_millis(100));
        if server.poll_timeout().is_some_and(|at| now >= at) {
            server.handle_timeout(now);
        }
        if get.poll_timeout().is_some_and(|at| now >= at) {
            get.handle_timeout(now);
        }
        for d in drain(&mut server, now) {
            get.receive(&d, now);
        }
        bounded_while_let!(n @ 1.. = get.transmit(&mut buf, now) => {
            if !was_lost && buf[..n] == lost {
                was_lost = true;
                continue;
            }
            server.receive(&buf[..n], now);
        });
        if outcome.is_none() {
            outcome = get.outcome();
        }
        if outcome.is_some() && !server.is_active() {
            break;
        }
    }
    assert!(was_lost, "{lost:?} never went out");
    [outcome, server.outcome()]
}

/// The ACK 0 of the OACK is lost once. The server repeats its OACK, as it
/// repeats a DATA whose ACK was lost, and the get acknowledges it again at
/// once, as a repeated DATA (a lost ACK 1 here): it does not wait for its own
/// timeout, by which the server would have given up.
#[test]
fn a_repeated_oack_is_acknowledged_again_like_a_repeated_data() {
    for lost in [[0, 4, 0, 0], [0, 4, 0, 1]] {
        assert_eq!(
            get_losing_one_ack(lost),
            [Some(Ok(1000)), Some(Ok(1000))],
            "ACK {lost:?} lost"
        );
    }
}

type Progress = fn(u64, Option<u64>);

/// A get of `f` into `into` asking for 1024-byte blocks (and what `config`
/// adds), its request gone out.
fn get_of_1024_byte_blocks(
    into: &mut [u8],
    config: ClientConfig,
) -> ClientGet<SliceSink<'_>, Progress> {
    let config = ClientConfig {
        block_size: Some(1024),
        ..config
    };
    let progress: Progress = |_, _| {};
    let mut get = ClientGet::new(
        FileName::new("f").unwrap(),
        config,
        SliceSink::new(into),
        progress,
    );
    assert!(get.transmit(&mut [0u8; 1100], Instant::ZERO) > 0);
    get
}

/// What `get` sends once it has `datagram` from the server.
fn answer_to(get: &mut ClientGet<SliceSink<'_>, Progress>, datagram: &[u8]) -> Vec<u8> {
    get.receive(datagram, Instant::ZERO);
    let mut buf = [0u8; 1100];
    let n = get.transmit(&mut buf, Instant::ZERO);
    buf[..n].to_vec()
}

/// The get, once it has `datagram` and sent all it has to: its outcome.
fn outcome_after(
    get: &mut ClientGet<SliceSink<'_>, Progress>,
    datagram: &[u8],
) -> Option<Result<u64, TftpError>> {
    get.receive(datagram, Instant::ZERO);
    bounded_while_let!(1.. = get.transmit(&mut [0u8; 1100], Instant::ZERO) => {});
    get.outcome()
}

/// ACK 0 accepts an OACK's options: a second OACK that grants others (a
/// 512-byte block after a 1024-byte one) is no repeat of the first, and is not
/// acknowledged. Which block the server now sends is not known: the get fails,
/// and does not take a 512-byte DATA 1 of a longer file for the last block.
#[test]
fn an_oack_of_other_options_after_the_first_fails_the_get() {
    let mut into = [0u8; 4096];
    let mut get = get_of_1024_byte_blocks(&mut into, ClientConfig::DEFAULT);
    let oack = |block_size| {
        emit(Packet::Oack {
            options: Options {
                block_size: Some(block_size),
                ..Options::NONE
            },
        })
    };
    assert_eq!(
        answer_to(&mut get, &oack(1024)),
        [0, 4, 0, 0],
        "ACK 0 of the first OACK"
    );
    // The same OACK again: acknowledged again.
    assert_eq!(
        answer_to(&mut get, &oack(1024)),
        [0, 4, 0, 0],
        "ACK 0 of its repeat"
    );
    // Another one: an ERROR, and the get fails.
    let refusal = answer_to(&mut get, &oack(512));
    assert_eq!(&refusal[..2], &[0, 5], "{refusal:?}");
    let data = emit(Packet::Data {
        block: 1,
        data: &[7u8; 512],
    });
    assert_eq!(
        outcome_after(&mut get, &data),
        Some(Err(TftpError::BadOptions))
    );
}

/// A repeat of the OACK that grants the same options in another order is a
/// repeat all the same: acknowledged again, and the get goes on.
#[test]
fn a_repeated_oack_with_its_options_reordered_is_acknowledged_again() {
    let mut into = [0u8; 4096];
    let mut get = get_of_1024_byte_blocks(&mut into, ClientConfig::DEFAULT);
    let first = b"\x00\x06blksize\x001024\x00tsize\x001500\x00";
    let again = b"\x00\x06tsize\x001500\x00blksize\x001024\x00";
    assert_eq!(
        answer_to(&mut get, first),
        [0, 4, 0, 0],
        "ACK 0 of the first OACK"
    );
    assert_eq!(
        answer_to(&mut get, again),
        [0, 4, 0, 0],
        "ACK 0 of its reordered repeat"
    );
    let data = pattern(1500);
    let block = |block, data| emit(Packet::Data { block, data });
    assert_eq!(answer_to(&mut get, &block(1, &data[..1024])), [0, 4, 0, 1]);
    assert_eq!(answer_to(&mut get, &block(2, &data[1024..])), [0, 4, 0, 2]);
    assert_eq!(get.outcome(), Some(Ok(1500)));
}

/// An OACK that leaves out the timeout the first one granted grants other
/// options: no repeat, and the get fails.
#[test]
fn an_oack_leaving_out_the_granted_timeout_is_no_repeat() {
    let mut into = [0u8; 4096];
    let config = ClientConfig {
        timeout: crate::time::Duration::from_secs(3),
        send_timeout: true,
        ..ClientConfig::DEFAULT
    };
    let mut get = get_of_1024_byte_blocks(&mut into, config);
    let first = b"\x00\x06blksize\x001024\x00timeout\x003\x00tsize\x001500\x00";
    assert_eq!(
        answer_to(&mut get, first),
        [0, 4, 0, 0],
        "ACK 0 of the first OACK"
    );
    assert_eq!(
        answer_to(&mut get, first),
        [0, 4, 0, 0],
        "ACK 0 of its repeat"
    );
    let without_timeout = b"\x00\x06blksize\x001024\x00tsize\x001500\x00";
    assert_eq!(
        outcome_after(&mut get, without_timeout),
        Some(Err(TftpError::BadOptions))
    );
}

#[test]
fn an_oack_granting_a_block_size_above_the_largest_is_refused() {
    // A request's blksize above 65464 reads as 65464 (the server may lower
    // it); an OACK's is the server's own, and one the client cannot run with.
    let config = ClientConfig {
        block_size: Some(65464),
        ..ClientConfig::DEFAULT
    };
    let oack = b"\0\x06blksize\x0065500\0";
    let mut into = vec![0u8; 16];
    let mut buf = vec![0u8; 70_000];
    let mut get = get_asked(&mut into, config, &mut buf, Instant::ZERO);
    get.receive(oack, Instant::ZERO);
    let n = get.transmit(&mut buf, Instant::ZERO);
    assert_eq!(error_code(&buf[..n]), Some(ErrorCode::OptionRefused));
    assert_eq!(get.outcome(), Some(Err(TftpError::BadOptions)));

    let data = pattern(70_000);
    let mut put = ClientPut::new(FileName::new("f").unwrap(), config, &data[..], |_, _| {});
    assert!(put.transmit(&mut buf, Instant::ZERO) > 0, "the WRQ");
    put.receive(oack, Instant::ZERO);
    let n = put.transmit(&mut buf, Instant::ZERO);
    assert_eq!(error_code(&buf[..n]), Some(ErrorCode::OptionRefused));
    assert_eq!(put.outcome(), Some(Err(TftpError::BadOptions)));
    // The largest itself is granted as asked.
    let mut into = vec![0u8; 16];
    let mut get = get_asked(&mut into, config, &mut buf, Instant::ZERO);
    get.receive(b"\0\x06blksize\x0065464\0", Instant::ZERO);
    let n = get.transmit(&mut buf, Instant::ZERO);
    assert_eq!(&buf[..n], [0, 4, 0, 0], "ACK 0");
}
