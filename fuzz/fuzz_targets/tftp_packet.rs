//! Feeds arbitrary bytes to the TFTP packet parser and to a server transfer
//! session, and checks what they promise: no panic; a packet that parses encodes
//! and parses back to itself (modes other than octet and netascii aside); a
//! session given any datagrams, then silence, ends within its retransmissions.
//!
//! Input layout: the whole input is also tried as one packet; for the session,
//! its first byte picks RRQ or WRQ and the rest is cut into datagrams at every
//! `0xff`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolsock::store::{FileName, RamStore, Storage};
use smolsock::tftp::packet::{Mode, Options, Packet, RequestKind};
use smolsock::tftp::{ServerConfig, ServerTransfer};
use smolsock::time::Instant;
use smolsock::transfer::{SharedStore, UploadLease};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = Packet::parse(data) {
        let mut buf = vec![0u8; data.len() + 256];
        let n = packet.emit(&mut buf).expect("a parsed packet encodes");
        let again = Packet::parse(&buf[..n]).expect("what we encode parses");
        if !matches!(
            packet,
            Packet::Request {
                mode: Mode::Other,
                ..
            }
        ) {
            assert_eq!(again, packet);
        }
    }

    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let shared = SharedStore::new(RamStore::<2, 4096>::new(), [UploadLease::EMPTY; 1]);
    shared
        .with_store(|s| {
            let name = FileName::new("f").expect("a plain name");
            let body = [7u8; 1500];
            let mut up = s.begin_upload(&name, 1500, false).expect("room");
            s.append(&mut up, &body).expect("room");
            s.commit(&up, smolsock::wire::crc32::crc32(&body))
                .expect("whole");
        })
        .expect("the store is free");
    let mut server = ServerTransfer::new(&shared, ServerConfig::DEFAULT);
    let mut request = [0u8; 64];
    let kind = if kind & 1 == 0 {
        RequestKind::Read
    } else {
        RequestKind::Write
    };
    let n = Packet::Request {
        kind,
        filename: b"f",
        mode: Mode::Octet,
        options: Options::NONE,
    }
    .emit(&mut request)
    .expect("fits");
    let mut now = Instant::ZERO;
    server.start(&request[..n], now);
    let mut out = [0u8; 600];
    for datagram in rest.split(|&b| b == 0xff) {
        now = now.saturating_add(smolsock::time::Duration::from_millis(300));
        server.receive(datagram, now);
        server.handle_timeout(now);
        while server.transmit(&mut out, now) > 0 {}
    }
    // Silence from here on: the transfer ends by time, within its tries.
    for _ in 0..100 {
        let Some(at) = server.poll_timeout() else {
            break;
        };
        now = at;
        server.handle_timeout(now);
        while server.transmit(&mut out, now) > 0 {}
    }
    assert!(!server.is_active());
});
