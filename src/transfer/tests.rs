//! The client's operations against the server's session, joined by an in-memory
//! byte pipe that moves bytes both ways in pieces of any size.

use super::*;
use crate::macros::bounded_while_let;
use crate::session::{Request, Session, Status};
use crate::store::{FileName, FileStat, RamStore, Storage};
use crate::time::Instant;
use crate::wire::crc32::crc32;
use proptest::prelude::*;

type Store = RamStore<8, 131_072>;

fn name(s: &str) -> FileName {
    FileName::new(s).unwrap()
}

/// Bytes that differ at every position, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 8) as u8)
        })
        .collect()
}

/// The link between one client and one server connection: bytes in flight each
/// way, the sizes each side moves them in, a virtual clock, and every byte that
/// went each way.
struct Pipe {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    /// Most bytes one `receive` is offered, cycled.
    cuts: Vec<usize>,
    /// Send space one `transmit` gets, cycled.
    spaces: Vec<usize>,
    turn: usize,
    now: Instant,
    up: Vec<u8>,
    down: Vec<u8>,
    /// Bytes each side took so far.
    taken_up: usize,
    taken_down: usize,
    /// Where the link dies: no side takes a byte past these counts.
    dies_at: (usize, usize),
}

/// No test moves more than this; a session that does is running away.
const RUNAWAY: usize = 50_000_000;

impl Pipe {
    fn new(cuts: &[usize], spaces: &[usize]) -> Self {
        assert!(cuts.iter().chain(spaces).all(|&n| n > 0));
        Self {
            to_server: Vec::new(),
            to_client: Vec::new(),
            cuts: cuts.to_vec(),
            spaces: spaces.to_vec(),
            turn: 0,
            now: Instant::ZERO,
            up: Vec::new(),
            down: Vec::new(),
            taken_up: 0,
            taken_down: 0,
            dies_at: (usize::MAX, usize::MAX),
        }
    }

    /// The link dies once the server has taken `up` more bytes, or the client
    /// `down` more; [`drive`](Self::drive) stops there.
    fn die_after(&mut self, up: usize, down: usize) {
        self.dies_at = (
            self.taken_up.saturating_add(up),
            self.taken_down.saturating_add(down),
        );
    }

    fn dead(&self) -> bool {
        self.taken_up >= self.dies_at.0 || self.taken_down >= self.dies_at.1
    }

    fn sizes(&mut self) -> (usize, usize) {
        self.turn += 1;
        (
            self.cuts[self.turn % self.cuts.len()],
            self.spaces[self.turn % self.spaces.len()],
        )
    }

    /// One round: the client sends, the server takes, the server sends, the client
    /// takes. Returns the bytes moved.
    fn round<R: Session, S: Session>(&mut self, client: &mut R, server: &mut S) -> usize {
        let (cut, space) = self.sizes();
        let mut buf = vec![0u8; space];
        let mut moved = 0;
        let n = client.transmit(&mut buf, self.now);
        self.to_server.extend_from_slice(&buf[..n]);
        self.up.extend_from_slice(&buf[..n]);
        moved += n;
        let offer = cut
            .min(self.to_server.len())
            .min(self.dies_at.0 - self.taken_up);
        let taken = server.receive(&self.to_server[..offer], self.now);
        assert!(taken <= offer);
        self.to_server.drain(..taken);
        self.taken_up += taken;
        moved += taken;
        let n = server.transmit(&mut buf, self.now);
        self.to_client.extend_from_slice(&buf[..n]);
        self.down.extend_from_slice(&buf[..n]);
        moved += n;
        let offer = cut
            .min(self.to_client.len())
            .min(self.dies_at.1 - self.taken_down);
        let taken = client.receive(&self.to_client[..offer], self.now);
        assert!(taken <= offer);
        self.to_client.drain(..taken);
        self.taken_down += taken;
        moved + taken
    }

    /// Moves bytes until `stop` says so (it sees the operation after every
    /// round) or the link dies. When nothing moves, time passes to the next deadline either side
    /// has; with none, the run is stuck and the test fails.
    fn drive<R: Session, S: Session>(
        &mut self,
        client: &mut R,
        server: &mut S,
        mut stop: impl FnMut(&mut R, &mut S) -> bool,
    ) {
        let mut still = 0;
        loop {
            if stop(client, server) || self.dead() {
                return;
            }
            assert!(self.up.len() + self.down.len() < RUNAWAY, "runaway");
            if self.round(client, server) > 0 {
                still = 0;
                continue;
            }
            // Local work (hashing) moves no byte: a few still rounds are fine.
            still += 1;
            assert!(still < 10_000, "nothing moves");
            if server.status() == Status::Close && self.to_client.is_empty() {
                client.receive_finished(self.now);
                continue;
            }
            let next = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("stuck: nothing moves and no deadline is set");
            assert!(still < 100 || next > self.now, "time does not help");
            self.now = self.now.max(next);
            client.handle_timeout(self.now);
            server.handle_timeout(self.now);
        }
    }

    /// Drives `op` until it has an outcome.
    fn run<R: Request, S: Session>(&mut self, op: &mut R, server: &mut S) -> R::Output {
        let mut outcome = None;
        self.drive(op, server, |op, _| {
            outcome = op.outcome();
            outcome.is_some()
        });
        outcome.unwrap()
    }

    /// The connection breaks: what is in flight is lost, both ends are told, and a
    /// new connection begins.
    fn cut<S: Session>(&mut self, client: &mut TransferClient<Vec<u8>>, server: &mut S) {
        self.to_server.clear();
        self.to_client.clear();
        self.dies_at = (usize::MAX, usize::MAX);
        server.end(self.now);
        server.start(self.now);
        client.reset();
    }
}

/// What a run of the whole scenario gave, for comparing runs.
#[derive(Debug, PartialEq)]
struct Results {
    outcomes: Vec<String>,
    files: Vec<(String, Vec<u8>)>,
    downloaded: Vec<Vec<u8>>,
    progress_ends: Vec<(u64, u64)>,
    /// Every byte each way, of the part of the run no connection breaks in.
    up: Vec<u8>,
    down: Vec<u8>,
    resumed: u64,
}

fn stored(shared: &SharedStore<Store>) -> Vec<(String, Vec<u8>)> {
    shared
        .with_store(|store| {
            let mut files = Vec::new();
            let mut after: Option<FileName> = None;
            while let Some(entry) = store.next_entry(after.as_ref()).unwrap() {
                let mut bytes = vec![0; entry.size as usize];
                store.read(&entry.name, 0, &mut bytes).unwrap();
                files.push((entry.name.as_str().to_owned(), bytes));
                after = Some(entry.name);
            }
            files
        })
        .unwrap()
}

/// Put, list, stat, get, delete, then an upload and a download that a broken
/// connection interrupts and a second connection resumes; with the pipe's
/// pieces and spaces.
fn scenario(cuts: &[usize], spaces: &[usize], frame: usize) -> Results {
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let mut server = TransferServer::new(&shared, vec![0; frame + 4], vec![0; frame + 4]).unwrap();
    server.start(Instant::ZERO);
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028]).unwrap();
    let mut pipe = Pipe::new(cuts, spaces);
    let mut results = Results {
        outcomes: Vec::new(),
        files: Vec::new(),
        downloaded: Vec::new(),
        progress_ends: Vec::new(),
        up: Vec::new(),
        down: Vec::new(),
        resumed: 0,
    };
    let a = pattern(5000, 1);
    let b = b"hello, world\n".to_vec();

    let mut seen = Vec::new();
    let mut put = client.put(name("a.bin"), &a[..], PutOptions::FRESH, |done, total| {
        seen.push((done, total))
    });
    let stat = pipe.run(&mut put, &mut server).unwrap();
    assert_eq!(
        stat,
        FileStat {
            size: 5000,
            crc: crc32(&a)
        }
    );
    assert_eq!(put.status(), Status::Open);
    drop(put);
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only grows"
    );
    results.progress_ends.push(*seen.last().unwrap());

    let options = PutOptions {
        resume: false,
        crc: Some(crc32(&b)),
    };
    let mut put = client.put(name("b.txt"), &b[..], options, |_, _| {});
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut put, &mut server)));

    let mut names = Vec::new();
    let mut list = client.list(|entry| names.push((entry.name, entry.size)));
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut list, &mut server)));
    drop(list);
    assert_eq!(names, [(name("a.bin"), 5000), (name("b.txt"), 13)]);

    let mut stat = client.stat(name("a.bin"));
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut stat, &mut server)));

    let mut buf = vec![0u8; 8000];
    let mut seen = Vec::new();
    let mut get = client.get(
        name("a.bin"),
        SliceSink::new(&mut buf),
        false,
        |done, total| seen.push((done, total)),
    );
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut get, &mut server)));
    assert!(get.sink().is_complete());
    results.downloaded.push(get.sink().data().to_vec());
    drop(get);
    results.progress_ends.push(*seen.last().unwrap());

    let mut delete = client.delete(name("b.txt"));
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut delete, &mut server)));
    let mut stat = client.stat(name("b.txt"));
    let refused = pipe.run(&mut stat, &mut server).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotFound));
    assert_eq!(
        stat.status(),
        Status::Open,
        "a refusal keeps the connection"
    );
    drop(stat);
    results.up = pipe.up.clone();
    results.down = pipe.down.clone();

    // An upload that a broken connection interrupts, then resumes.
    let c = pattern(20_000, 3);
    let before = shared.stats().bytes_in;
    let mut put = client.put(name("c.bin"), &c[..], PutOptions::RESUME, |_, _| {});
    pipe.die_after(7000, usize::MAX);
    pipe.drive(&mut put, &mut server, |_, _| false);
    drop(put);
    pipe.cut(&mut client, &mut server);
    // The partial holds the whole DATA frames among the 7000 bytes after the PUT.
    let body = frame.min(1024);
    let held = shared.stats().bytes_in - before;
    assert_eq!(held, ((7000 - 24) / (4 + body) * (body - 9)) as u64);
    let mut seen = Vec::new();
    let mut put = client.put(name("c.bin"), &c[..], PutOptions::RESUME, |done, total| {
        seen.push((done, total))
    });
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut put, &mut server)));
    drop(put);
    assert_eq!(
        seen.first(),
        Some(&(held, 20_000)),
        "resumed where it stopped"
    );
    results.resumed = shared.stats().uploads_resumed;

    // A download that a broken connection interrupts, then resumes.
    let mut buf = vec![0u8; 20_000];
    let mut sink = SliceSink::new(&mut buf);
    let mut get = client.get(name("c.bin"), &mut sink, true, |_, _| {});
    pipe.die_after(usize::MAX, 9000);
    pipe.drive(&mut get, &mut server, |_, _| false);
    drop(get);
    pipe.cut(&mut client, &mut server);
    // The sink holds the whole DATA frames among the 9000 bytes after GET_READY.
    assert_eq!(sink.data().len(), (9000 - 21) / (4 + body) * (body - 9));
    let mut get = client.get(name("c.bin"), &mut sink, true, |_, _| {});
    results
        .outcomes
        .push(format!("{:?}", pipe.run(&mut get, &mut server)));
    drop(get);
    assert!(sink.is_complete());
    results.downloaded.push(sink.data().to_vec());

    results.files = stored(&shared);
    results
}

#[test]
fn a_whole_transfer_between_a_client_and_a_server_session() {
    let results = scenario(&[1500], &[1500], 1024);
    assert_eq!(
        results.files,
        [
            ("a.bin".to_owned(), pattern(5000, 1)),
            ("c.bin".to_owned(), pattern(20_000, 3))
        ]
    );
    assert_eq!(results.downloaded, [pattern(5000, 1), pattern(20_000, 3)]);
    assert_eq!(results.progress_ends, [(5000, 5000), (5000, 5000)]);
    assert_eq!(results.resumed, 1);
    assert!(
        results.outcomes.iter().all(|o| o.starts_with("Ok")),
        "{:?}",
        results.outcomes
    );
}

#[test]
fn the_smallest_pieces_and_frames_give_the_same_result() {
    let reference = scenario(&[1500], &[1500], 1024);
    for (cuts, spaces, frame) in [
        (&[1][..], &[1][..], 1024),
        (&[7, 1, 300][..], &[13, 2000][..], 128),
        (&[100_000][..], &[100_000][..], 65_536),
    ] {
        let results = scenario(cuts, spaces, frame);
        assert_eq!(results.outcomes, reference.outcomes);
        assert_eq!(results.files, reference.files);
        assert_eq!(results.downloaded, reference.downloaded);
        if frame == 1024 {
            assert!(results.up == reference.up && results.down == reference.down);
        }
    }
}

#[test]
fn a_client_times_out_on_a_silent_server_and_the_connection_must_go() {
    let mut client = TransferClient::new(vec![0; 260], vec![0; 260])
        .unwrap()
        .with_timeout(Some(crate::time::Duration::from_secs(5)));
    let mut stat = client.stat(name("x"));
    let mut space = [0u8; 64];
    assert_eq!(stat.transmit(&mut space, Instant::from_secs(1)), 14);
    assert_eq!(stat.poll_timeout(), Some(Instant::from_secs(6)));
    stat.handle_timeout(Instant::from_secs(5));
    assert_eq!(stat.outcome(), None);
    stat.handle_timeout(Instant::from_secs(6));
    assert_eq!(stat.outcome(), Some(Err(ClientError::Timeout)));
    assert_eq!(stat.status(), Status::Abort);
    drop(stat);
    let mut again = client.stat(name("x"));
    again.transmit(&mut space, Instant::from_secs(7));
    assert_eq!(again.outcome(), Some(Err(ClientError::Unusable)));
    drop(again);
    client.reset();
    let mut fresh = client.stat(name("x"));
    assert_eq!(
        fresh.transmit(&mut space, Instant::from_secs(8)),
        14,
        "HELLO again"
    );
}

#[test]
fn a_server_that_closes_after_an_error_ends_the_client_s_request() {
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let mut server = TransferServer::new(&shared, vec![0; 260], vec![0; 260]).unwrap();
    server.start(Instant::ZERO);
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028]).unwrap();
    let mut pipe = Pipe::new(&[4000], &[4000]);
    let data = pattern(3000, 9);
    let mut put = client.put(name("x"), &data[..], PutOptions::FRESH, |_, _| {});
    assert_eq!(pipe.run(&mut put, &mut server).map(|s| s.size), Ok(3000));
    drop(put);
    // Now a peer that breaks the limit: a DATA header over 256, straight in.
    let mut frame = 300u32.to_be_bytes().to_vec();
    frame.push(0x10);
    assert_eq!(server.receive(&frame, Instant::ZERO), 5);
    let mut stat = client.stat(name("x"));
    let outcome = pipe.run(&mut stat, &mut server);
    // The server's FrameTooLarge answers the stream, not the STAT: the client
    // sees it in place of STAT_OK and the server closes.
    assert_eq!(outcome.unwrap_err().code(), Some(ErrorCode::FrameTooLarge));
    assert_eq!(stat.status(), Status::Close, "the client closes too");
    assert_eq!(server.status(), Status::Close);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the pieces the bytes move in and the send spaces, the same
    /// requests give the same outcomes, the same files and the same bytes on the
    /// wire.
    #[test]
    fn any_split_and_any_send_space_gives_the_same_result(
        cuts in prop::collection::vec(1usize..3000, 1..6),
        spaces in prop::collection::vec(1usize..3000, 1..6),
    ) {
        let reference = scenario(&[1500], &[1500], 1024);
        let results = scenario(&cuts, &spaces, 1024);
        prop_assert_eq!(&results.outcomes, &reference.outcomes);
        prop_assert_eq!(&results.files, &reference.files);
        prop_assert_eq!(&results.downloaded, &reference.downloaded);
        prop_assert!(results.up == reference.up, "bytes to the server differ");
        prop_assert!(results.down == reference.down, "bytes to the client differ");
    }
}

/// A source that takes `micros_per_byte` of the shared clock for every byte
/// read: a slow flash or SD card.
struct SlowSource<'a> {
    data: &'a [u8],
    clock: &'a core::cell::Cell<u64>,
    micros_per_byte: u64,
}

impl FileSource for SlowSource<'_> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let n = (&self.data[..]).read(offset, buf)?;
        self.clock
            .set(self.clock.get() + n as u64 * self.micros_per_byte);
        Ok(n)
    }
}

#[test]
fn a_resume_whose_prefix_check_outlasts_the_request_timeout_still_finishes() {
    // The client checks the 100,000 bytes it skips at 50 KB/s: 2 s, past the
    // server's 1 s request deadline, but the skipped part counts for the rate.
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    let data = pattern(120_000, 9);
    shared
        .with_store(|s| {
            let mut up = s.begin_upload(&name("big"), 120_000, false).unwrap();
            s.append(&mut up, &data[..100_000]).unwrap();
        })
        .unwrap();
    let mut server = TransferServer::new(&shared, vec![0; 1028], vec![0; 1028])
        .unwrap()
        .with_request_timeout(crate::time::Duration::from_secs(1));
    server.start(Instant::ZERO);
    let clock = core::cell::Cell::new(0u64);
    let source = SlowSource {
        data: &data,
        clock: &clock,
        micros_per_byte: 20,
    };
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028]).unwrap();
    let options = PutOptions {
        resume: true,
        crc: Some(crc32(&data)),
    };
    let mut put = client.put(name("big"), source, options, |_, _| {});
    let (mut up, mut down, mut buf) = (Vec::new(), Vec::new(), vec![0u8; 4096]);
    let mut outcome = None;
    for _ in 0..100_000 {
        outcome = put.outcome();
        if outcome.is_some() {
            break;
        }
        let now = Instant::from_micros(clock.get());
        if put.poll_timeout().is_some_and(|t| t <= now) {
            put.handle_timeout(now);
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        let now = Instant::from_micros(clock.get());
        let n = put.transmit(&mut buf, now);
        up.extend_from_slice(&buf[..n]);
        let taken = server.receive(&up, now);
        up.drain(..taken);
        let m = server.transmit(&mut buf, now);
        down.extend_from_slice(&buf[..m]);
        let got = put.receive(&down, now);
        down.drain(..got);
        if n + m == 0 && got == 0 {
            let next = [put.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .expect("a deadline");
            clock.set(clock.get().max(next.total_micros()));
        }
    }
    let outcome = outcome.expect("the upload ends");
    assert_eq!(shared.stats().slow_transfers, 0, "{outcome:?}");
    assert!(outcome.is_ok(), "{outcome:?}");
    assert!(clock.get() > 2_000_000, "the check took its time");
}

#[test]
fn a_put_waiting_for_hello_ok_times_out() {
    // A server that accepts the connection and never answers HELLO.
    let mut client = TransferClient::new(vec![0; 260], vec![0; 260])
        .unwrap()
        .with_timeout(Some(crate::time::Duration::from_secs(5)));
    let data = pattern(100, 1);
    let mut put = client.put(name("x"), &data[..], PutOptions::FRESH, |_, _| {});
    let mut space = [0u8; 64];
    assert_eq!(put.transmit(&mut space, Instant::from_secs(1)), 14, "HELLO");
    // The caller does what the Session contract says: handle_timeout at poll_timeout.
    let mut outcome = None;
    for _ in 0..100 {
        outcome = put.outcome();
        if outcome.is_some() {
            break;
        }
        let Some(due) = put.poll_timeout() else { break };
        put.handle_timeout(due);
    }
    assert_eq!(outcome, Some(Err(ClientError::Timeout)));
    assert_eq!(put.poll_timeout(), None);
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn raw_hello_ok() -> Vec<u8> {
    let mut b = vec![0x81, b'S', b'S', b'F', b'T', 1];
    b.extend_from_slice(&65_536u32.to_be_bytes());
    raw_frame(&b)
}

fn raw_error(code: u8, value: u64) -> Vec<u8> {
    let mut b = vec![0xFF, code];
    b.extend_from_slice(&value.to_be_bytes());
    raw_frame(&b)
}

fn raw_stat_ok(size: u64, crc: u32) -> Vec<u8> {
    let mut b = vec![0x87];
    b.extend_from_slice(&size.to_be_bytes());
    b.extend_from_slice(&crc.to_be_bytes());
    raw_frame(&b)
}

/// A flash file whose second chunk cannot be read.
struct FailsAt(u64);

impl FileSource for FailsAt {
    fn size(&self) -> u64 {
        1000
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        if offset >= self.0 {
            return Err(LocalError::Read);
        }
        buf.fill(7);
        Ok(buf.len().min((self.0 - offset) as usize))
    }
}

#[test]
fn an_error_in_flight_for_an_abandoned_upload_is_not_the_next_request_s_answer() {
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let now = Instant::ZERO;
    let mut space = vec![0u8; 4096];
    let options = PutOptions {
        resume: false,
        crc: Some(0x1234_5678),
    };
    let mut put = client.put(name("x"), FailsAt(247), options, |_, _| {});
    assert!(put.transmit(&mut space, now) > 0, "HELLO");
    put.receive(&raw_hello_ok(), now);
    assert!(put.transmit(&mut space, now) > 0, "PUT");
    let mut ready = vec![0x82];
    ready.extend_from_slice(&[0; 12]);
    put.receive(&raw_frame(&ready), now);
    // DATA at 0 goes out, then the source fails at 247.
    assert!(put.transmit(&mut space, now) > 0);
    assert_eq!(
        put.outcome(),
        Some(Err(ClientError::Local(LocalError::Read)))
    );
    drop(put);
    // Meanwhile the server answered that first DATA: ERROR Full (0x09).
    let mut stat_y = client.stat(name("y"));
    let sent = stat_y.transmit(&mut space, now);
    let mut down = raw_error(0x09, 0);
    down.extend(raw_stat_ok(5, 0x5555_5555)); // STAT_OK for "y"
    stat_y.receive(&down, now);
    let y = stat_y.outcome();
    drop(stat_y);
    let mut stat_z = client.stat(name("z"));
    stat_z.transmit(&mut space, now);
    stat_z.receive(&raw_stat_ok(9, 0x9999_9999), now); // STAT_OK for "z"
    let z = stat_z.outcome();
    // Either the client refuses to go on over a connection whose state it does
    // not know, or it must not hand one request's answer to another.
    assert!(
        sent == 0 || matches!(y, Some(Err(ClientError::Unusable))),
        "STAT y sent {sent} bytes and got {y:?}; STAT z then got {z:?}"
    );
}

/// Drives `op` as a server sending frame `next(i)` every `every` seconds
/// would (`i` from 0), handling each deadline that passes, until `op` has an
/// outcome or `steps` frames went: the outcome, if any, `now` left where it
/// came.
fn drip<R: Request>(
    op: &mut R,
    now: &mut Instant,
    every: u64,
    steps: usize,
    mut next: impl FnMut(usize) -> Vec<u8>,
) -> Option<R::Output> {
    for i in 0..steps {
        *now = now.saturating_add(crate::time::Duration::from_secs(every));
        if op.poll_timeout().is_some_and(|t| *now >= t) {
            op.handle_timeout(*now);
        }
        if let Some(outcome) = op.outcome() {
            return Some(outcome);
        }
        op.receive(&next(i), *now);
        if let Some(outcome) = op.outcome() {
            return Some(outcome);
        }
    }
    None
}

#[test]
fn a_server_sending_empty_data_cannot_hold_a_download_for_ever() {
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260])
        .unwrap()
        .with_timeout(Some(crate::time::Duration::from_secs(60)));
    let mut space = vec![0u8; 4096];
    let mut into = [0u8; 64];
    let mut get = client.get(name("f"), SliceSink::new(&mut into), false, |_, _| {});
    let mut now = Instant::ZERO;
    get.transmit(&mut space, now);
    get.receive(&raw_hello_ok(), now);
    get.transmit(&mut space, now);
    let mut ready = vec![0x84];
    ready.extend_from_slice(&10u64.to_be_bytes());
    ready.extend_from_slice(&[0; 8]);
    get.receive(&raw_frame(&ready), now);
    let mut empty = vec![0x10];
    empty.extend_from_slice(&0u64.to_be_bytes());
    let empty = raw_frame(&empty);
    // An empty DATA at offset 0 every 30 s, for a day: no file byte ever comes.
    // The first moves nothing; the second is refused.
    let outcome = drip(&mut get, &mut now, 30, 2880, |_| empty.clone());
    assert_eq!(
        outcome,
        Some(Err(ClientError::Protocol(ProtocolError::Unexpected(
            crate::wire::transfer::MessageType::Data
        )))),
        "at {now:?}"
    );
    assert_eq!(
        now,
        Instant::from_secs(60),
        "refused at the second empty DATA"
    );
}

#[test]
fn a_server_sending_empty_data_cannot_hold_a_stale_resume_s_drain_for_ever() {
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260])
        .unwrap()
        .with_timeout(Some(crate::time::Duration::from_secs(60)));
    let mut space = vec![0u8; 4096];
    let mut into = [0u8; 64];
    let mut sink = SliceSink::new(&mut into);
    sink.write(0, b"abc").unwrap();
    let mut get = client.get(name("f"), sink, true, |_, _| {});
    let mut now = Instant::ZERO;
    get.transmit(&mut space, now);
    get.receive(&raw_hello_ok(), now);
    get.transmit(&mut space, now);
    // GET_READY for 10 bytes, with a prefix CRC that is not that of the 3 held:
    // the client drops the DATA up to 10 before it asks again from 0.
    let mut ready = vec![0x84];
    ready.extend_from_slice(&10u64.to_be_bytes());
    ready.extend_from_slice(&0x1111_1111u32.to_be_bytes());
    ready.extend_from_slice(&0x2222_2222u32.to_be_bytes());
    get.receive(&raw_frame(&ready), now);
    let mut empty = vec![0x10];
    empty.extend_from_slice(&3u64.to_be_bytes());
    let empty = raw_frame(&empty);
    // An empty DATA at offset 3 every 30 s, for a day: none of the 7 bytes to
    // drop ever comes.
    // The first moves nothing; the second is refused.
    let outcome = drip(&mut get, &mut now, 30, 2880, |_| empty.clone());
    assert!(outcome.is_some(), "still draining after {now:?}");
    assert_eq!(
        outcome,
        Some(Err(ClientError::Protocol(ProtocolError::Unexpected(
            crate::wire::transfer::MessageType::Data
        )))),
        "at {now:?}"
    );
    assert_eq!(
        now,
        Instant::from_secs(60),
        "refused at the second empty DATA"
    );
}

/// `message` framed, as the server sends it.
fn raw_message(message: &crate::wire::transfer::Message<'_>) -> Vec<u8> {
    let mut body = vec![0; message.buffer_len()];
    let n = message.emit(&mut body).unwrap();
    raw_frame(&body[..n])
}

/// The `i`-th ENTRY of a listing (`f000000` on), one byte long.
fn entry(i: usize) -> Vec<u8> {
    raw_message(&crate::wire::transfer::Message::Entry {
        name: name(&format!("f{i:06}")),
        size: 1,
    })
}

/// A download from a server that sends `chunk` bytes of a file of `size` every
/// `every` seconds, until the client ends it (or 10,000 chunks): its outcome
/// and when it came. With `held`, the sink already holds that many bytes of
/// the file and the client asks to resume after them.
fn trickled_download(
    client: &mut TransferClient<Vec<u8>>,
    size: usize,
    held: usize,
    chunk: usize,
    every: u64,
) -> (Option<Result<FileStat, ClientError>>, Instant, Status) {
    let file = vec![7u8; size];
    let mut into = vec![0u8; size];
    let mut sink = SliceSink::new(&mut into);
    let held_bytes = file.get(..held).unwrap();
    sink.write(0, held_bytes).unwrap();
    let mut space = vec![0u8; 4096];
    let mut get = client.get(name("f"), sink, held > 0, |_, _| {});
    let mut now = Instant::ZERO;
    get.transmit(&mut space, now);
    get.receive(&raw_hello_ok(), now);
    get.transmit(&mut space, now);
    let mut ready = vec![0x84];
    ready.extend_from_slice(&(size as u64).to_be_bytes());
    ready.extend_from_slice(&crc32(&file).to_be_bytes());
    ready.extend_from_slice(&crc32(held_bytes).to_be_bytes());
    get.receive(&raw_frame(&ready), now);
    let mut next = held;
    let outcome = drip(&mut get, &mut now, every, 10_000, |_| {
        let end = (next + chunk).min(size);
        let mut data = vec![0x10];
        data.extend_from_slice(&(next as u64).to_be_bytes());
        data.extend_from_slice(file.get(next..end).unwrap());
        next = end;
        raw_frame(&data)
    });
    (outcome, now, get.status())
}

#[test]
fn a_server_trickling_a_download_is_left_at_the_minimum_rate() {
    // 100 bytes a second, each DATA in time for the 60 s timeout: the client
    // allows 60 s from the start and a second per 500 bytes moved, about 77 s.
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let (outcome, at, status) = trickled_download(&mut client, 1_000_000, 0, 100, 1);
    assert_eq!(outcome, Some(Err(ClientError::TooSlow { rate: 500 })));
    assert!(
        (Instant::from_secs(75)..=Instant::from_secs(80)).contains(&at),
        "ended at {at:?}"
    );
    assert_eq!(status, Status::Abort, "the server is still sending");
    // The same trickle is fine for a client that asks for no minimum rate.
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260])
        .unwrap()
        .with_min_rate(0);
    let (outcome, at, _) = trickled_download(&mut client, 20_000, 0, 100, 1);
    assert!(
        matches!(outcome, Some(Ok(FileStat { size: 20_000, .. }))),
        "{outcome:?} at {at:?}"
    );
    assert_eq!(at, Instant::from_secs(200));
    // And a server at twice the minimum rate gets its whole file through.
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let (outcome, at, _) = trickled_download(&mut client, 200_000, 0, 1_000, 1);
    assert!(
        matches!(outcome, Some(Ok(FileStat { size: 200_000, .. }))),
        "{outcome:?} at {at:?}"
    );
}

#[test]
fn a_resumed_download_has_time_for_the_prefix_the_server_checks() {
    // A byte every 50 s: 60 s from the start is all a fresh download gets, but
    // a resume after 50,000 held bytes (which the server reads to check their
    // CRC) has 100 s more.
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let (fresh, fresh_at, _) = trickled_download(&mut client, 100_000, 0, 1, 50);
    assert_eq!(fresh, Some(Err(ClientError::TooSlow { rate: 500 })));
    assert_eq!(fresh_at, Instant::from_secs(100));
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let (resumed, resumed_at, _) = trickled_download(&mut client, 100_000, 50_000, 1, 50);
    assert_eq!(resumed, Some(Err(ClientError::TooSlow { rate: 500 })));
    assert_eq!(resumed_at, Instant::from_secs(200));
}

#[test]
fn a_server_trickling_entries_cannot_hold_a_listing() {
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let mut space = vec![0u8; 4096];
    let mut listed = 0u32;
    let mut list = client.list(|_| listed += 1);
    let mut now = Instant::ZERO;
    list.transmit(&mut space, now);
    list.receive(&raw_hello_ok(), now);
    list.transmit(&mut space, now);
    // An ENTRY every 30 s, each in time for the 60 s timeout: at 500 B/s the
    // few bytes moved buy less than a second past the first 60.
    let outcome = drip(&mut list, &mut now, 30, 100_000, entry);
    assert_eq!(outcome, Some(Err(ClientError::TooSlow { rate: 500 })));
    assert_eq!(now, Instant::from_secs(90));
    assert_eq!(list.status(), Status::Abort);
    drop(list);
    assert_eq!(listed, 2);
    let mut again = client.stat(name("x"));
    again.transmit(&mut space, now);
    assert_eq!(again.outcome(), Some(Err(ClientError::Unusable)));
}

#[test]
fn a_server_sending_entries_for_ever_cannot_hold_a_listing() {
    // The count alone (no minimum rate): entries every 30 s, for ever.
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260])
        .unwrap()
        .with_min_rate(0);
    let mut space = vec![0u8; 4096];
    let mut listed = 0u32;
    let mut list = client.list(|_| listed += 1);
    let mut now = Instant::ZERO;
    list.transmit(&mut space, now);
    list.receive(&raw_hello_ok(), now);
    assert_eq!(list.transmit(&mut space, now), 5, "LIST");
    // A new ENTRY every 30 s, well within the client's timeout, and never a
    // LIST_END: 100,000 of them would take 35 days.
    let mut sent = 0u32;
    let outcome = drip(&mut list, &mut now, 30, 100_000, |i| {
        sent += 1;
        entry(i)
    });
    assert_eq!(
        outcome,
        Some(Err(ClientError::TooManyEntries { max: 65_536 })),
        "after {sent} entries, at {now:?}"
    );
    assert_eq!(list.status(), Status::Close, "the server is still sending");
    drop(list);
    assert_eq!(
        (listed, sent),
        (65_536, 65_537),
        "the one past the limit is not handed on"
    );
    assert_eq!(now, Instant::from_secs(65_537 * 30));
    let mut again = client.stat(name("x"));
    again.transmit(&mut space, now);
    assert_eq!(again.outcome(), Some(Err(ClientError::Unusable)));
}

#[test]
fn a_listing_takes_as_many_entries_as_the_client_allows() {
    use crate::wire::transfer::Message;
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    for i in 0..5 {
        shared
            .with_store(|store| {
                let mut upload = store.begin_upload(&name(&format!("f{i}")), 1, false)?;
                store.append(&mut upload, b"x")?;
                store.commit(&upload, crc32(b"x"))
            })
            .unwrap()
            .unwrap();
    }
    for (max, expected) in [
        (5, Ok(5)),
        (u32::MAX, Ok(5)),
        (4, Err(ClientError::TooManyEntries { max: 4 })),
        (0, Err(ClientError::TooManyEntries { max: 0 })),
    ] {
        let mut server = TransferServer::new(&shared, vec![0; 1028], vec![0; 1028]).unwrap();
        server.start(Instant::ZERO);
        let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028])
            .unwrap()
            .with_max_entries(max);
        let mut names = Vec::new();
        let mut list = client.list(|entry| names.push(entry.name));
        let outcome = Pipe::new(&[1500], &[1500]).run(&mut list, &mut server);
        assert_eq!(outcome, expected, "max {max}");
        let status = if expected.is_ok() {
            Status::Open
        } else {
            Status::Close
        };
        assert_eq!(list.status(), status, "max {max}");
        drop(list);
        assert_eq!(names.len(), (max as usize).min(5), "max {max}");
    }
    // An empty listing is within any limit.
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260])
        .unwrap()
        .with_max_entries(0);
    let mut list = client.list(|_| panic!("no entry"));
    let mut space = vec![0u8; 4096];
    list.transmit(&mut space, Instant::ZERO);
    list.receive(&raw_hello_ok(), Instant::ZERO);
    list.transmit(&mut space, Instant::ZERO);
    list.receive(&raw_message(&Message::ListEnd { count: 0 }), Instant::ZERO);
    assert_eq!(list.outcome(), Some(Ok(0)));
    assert_eq!(list.status(), Status::Open);
}

/// A file of `self.0` zero bytes, read from nowhere.
struct Zeros(u64);

impl FileSource for Zeros {
    fn size(&self) -> u64 {
        self.0
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        let left = self.0.saturating_sub(offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        Ok(n)
    }
}

/// Drives `op` from `from` to `to` (seconds) a second at a time, handling every
/// deadline that passes, as a poll loop would; its outcome if it ended.
fn wait_until<R: Request>(op: &mut R, from: u64, to: u64) -> Option<R::Output> {
    for s in from..=to {
        let now = Instant::from_secs(s);
        if op.poll_timeout().is_some_and(|t| now >= t) {
            op.handle_timeout(now);
        }
        if let Some(outcome) = op.outcome() {
            return Some(outcome);
        }
    }
    None
}

/// At 0 s: HELLO, HELLO_OK and the PUT out; then 50 s of a server checking
/// its partial, which must not end the upload.
fn put_then_50_s_of_checking<R>(put: &mut R, space: &mut [u8])
where
    R: Request<Output = Result<FileStat, ClientError>>,
{
    put.transmit(space, Instant::ZERO);
    put.receive(&raw_hello_ok(), Instant::ZERO);
    assert!(put.transmit(space, Instant::ZERO) > 0, "PUT");
    assert_eq!(wait_until(put, 1, 50), None, "cut while the server checks");
}

#[test]
fn an_upload_resumed_whole_has_time_for_the_server_to_check_and_commit() {
    // The server holds all 10 MB: it reads them to check their CRC (50 s),
    // and commits (40 s more); nothing else moves.
    let size = 10_000_000u64;
    let crc = 0x1234_5678;
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let options = PutOptions {
        resume: true,
        crc: Some(crc),
    };
    let mut put = client.put(name("big"), Zeros(size), options, |_, _| {});
    let mut space = vec![0u8; 4096];
    put_then_50_s_of_checking(&mut put, &mut space);
    let ready = raw_message(&crate::wire::transfer::Message::PutReady {
        offset: size,
        prefix_crc: crc,
    });
    put.receive(&ready, Instant::from_secs(50));
    put.transmit(&mut space, Instant::from_secs(50));
    assert_eq!(
        wait_until(&mut put, 51, 90),
        None,
        "cut while the server commits"
    );
    let done = raw_message(&crate::wire::transfer::Message::PutDone { size, crc });
    put.receive(&done, Instant::from_secs(90));
    assert_eq!(put.outcome(), Some(Ok(FileStat { size, crc })));
}

#[test]
fn the_bytes_an_upload_hashes_count_toward_the_minimum_rate() {
    // 60,000 bytes hashed in one call, taking 30 s (a slow flash): they buy
    // 120 s, so a server answering PUT at 70 s is in time.
    let data = vec![5u8; 60_000];
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let mut put = client.put(name("cfg"), &data[..], PutOptions::FRESH, |_, _| {});
    let mut space = vec![0u8; 4096];
    put.transmit(&mut space, Instant::ZERO);
    put.receive(&raw_hello_ok(), Instant::ZERO);
    assert!(
        put.transmit(&mut space, Instant::from_secs(30)) > 0,
        "PUT, once hashed"
    );
    assert_eq!(wait_until(&mut put, 31, 70), None, "cut before PUT_READY");
    let now = Instant::from_secs(70);
    let ready = raw_message(&crate::wire::transfer::Message::PutReady {
        offset: 0,
        prefix_crc: 0,
    });
    put.receive(&ready, now);
    bounded_while_let!(1.. = put.transmit(&mut space, now) => {});
    let done = raw_message(&crate::wire::transfer::Message::PutDone {
        size: 60_000,
        crc: crc32(&data),
    });
    put.receive(&done, now);
    assert!(matches!(put.outcome(), Some(Ok(_))));
}

#[test]
fn the_prefix_a_resumed_upload_checks_counts_toward_the_minimum_rate() {
    // The server holds 60,000 of 60,010 bytes: it checks them (50 s), the
    // client checks them too, sends 10 bytes, and the server commits (50 s).
    let data = vec![9u8; 60_010];
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let options = PutOptions {
        resume: true,
        crc: Some(crc32(&data)),
    };
    let mut put = client.put(name("f"), &data[..], options, |_, _| {});
    let mut space = vec![0u8; 4096];
    put_then_50_s_of_checking(&mut put, &mut space);
    let now = Instant::from_secs(50);
    let ready = raw_message(&crate::wire::transfer::Message::PutReady {
        offset: 60_000,
        prefix_crc: crc32(&data[..60_000]),
    });
    put.receive(&ready, now);
    assert!(put.transmit(&mut space, now) > 0, "the last 10 bytes");
    assert_eq!(
        wait_until(&mut put, 51, 100),
        None,
        "cut while the server commits"
    );
    let done = raw_message(&crate::wire::transfer::Message::PutDone {
        size: 60_010,
        crc: crc32(&data),
    });
    put.receive(&done, Instant::from_secs(100));
    assert!(matches!(put.outcome(), Some(Ok(_))));
}

#[test]
fn an_operation_not_yet_begun_has_no_deadline() {
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let stat = client.stat(name("x"));
    assert_eq!(stat.poll_timeout(), None);
}

#[test]
fn a_resume_the_server_refuses_buys_it_no_time() {
    // The sink holds 100,000 bytes, the server's file is 90,000: ERROR
    // BadOffset (it read nothing), GET from 0, then a byte every 50 s. A
    // fresh download is cut at 100 s; so is this one.
    let size = 90_000usize;
    let file = vec![7u8; size];
    let mut into = vec![0u8; 200_000];
    let mut sink = SliceSink::new(&mut into);
    sink.write(0, &[1u8; 100_000]).unwrap();
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 260]).unwrap();
    let mut get = client.get(name("f"), sink, true, |_, _| {});
    let mut space = vec![0u8; 4096];
    let mut now = Instant::ZERO;
    get.transmit(&mut space, now);
    get.receive(&raw_hello_ok(), now);
    assert!(get.transmit(&mut space, now) > 0, "GET from 100,000");
    get.receive(&raw_error(0x0C, size as u64), now); // ERROR BadOffset
    assert!(get.transmit(&mut space, now) > 0, "GET from 0");
    let mut ready = vec![0x84];
    ready.extend_from_slice(&(size as u64).to_be_bytes());
    ready.extend_from_slice(&crc32(&file).to_be_bytes());
    ready.extend_from_slice(&0u32.to_be_bytes());
    get.receive(&raw_frame(&ready), now);
    let outcome = drip(&mut get, &mut now, 50, size, |next| {
        let mut data = vec![0x10];
        data.extend_from_slice(&(next as u64).to_be_bytes());
        data.push(7);
        raw_frame(&data)
    });
    assert_eq!(outcome, Some(Err(ClientError::TooSlow { rate: 500 })));
    assert_eq!(now, Instant::from_secs(100), "cut at");
}

/// Drives `op` against `server` by hand, the client given the server's
/// frames one whole frame per round (as TCP segments may cut them).
fn one_frame_at_a_time<R: Request, S: Session>(
    op: &mut R,
    server: &mut S,
    down: &mut Vec<u8>,
) -> R::Output {
    let now = Instant::ZERO;
    let mut buf = vec![0u8; 4096];
    for _ in 0..1000 {
        let n = op.transmit(&mut buf, now);
        assert_eq!(server.receive(&buf[..n], now), n);
        let m = server.transmit(&mut buf, now);
        down.extend_from_slice(&buf[..m]);
        if down.len() >= 4 {
            let len = 4 + u32::from_be_bytes(down[..4].try_into().unwrap()) as usize;
            let took = op.receive(&down[..len], now);
            down.drain(..took);
        }
        if let Some(outcome) = op.outcome() {
            return outcome;
        }
    }
    panic!("no outcome");
}

/// A store holding a partial of "f" with every byte of another version of
/// the file: its commit never came (the connection went first).
fn whole_partial_of_other_bytes() -> SharedStore<Store, [UploadLease; 1]> {
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    shared
        .with_store(|s| {
            let mut up = s.begin_upload(&name("f"), 13, false).unwrap();
            s.append(&mut up, b"hello, w0rld\n").unwrap();
        })
        .unwrap();
    shared
}

#[test]
fn a_resume_over_a_whole_partial_of_other_bytes_starts_over_and_stays_in_step() {
    // The server refuses the stale partial on its own once PUT_READY is out
    // (ERROR ChecksumMismatch); a new PUT sent before that answer came would
    // have its PUT_READY taken for the answer to the next request.
    let shared = whole_partial_of_other_bytes();
    let mut server = TransferServer::new(&shared, vec![0; 1028], vec![0; 1028]).unwrap();
    server.start(Instant::ZERO);
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028]).unwrap();
    let mut down = Vec::new();
    let file = b"hello, world\n";
    let mut put = client.put(name("f"), &file[..], PutOptions::RESUME, |_, _| {});
    let outcome = one_frame_at_a_time(&mut put, &mut server, &mut down);
    drop(put);
    assert_eq!(outcome.map(|s| s.crc), Ok(crc32(file)));
    let mut stat = client.stat(name("f"));
    let stat = one_frame_at_a_time(&mut stat, &mut server, &mut down);
    assert_eq!(
        stat.map(|s| s.crc),
        Ok(crc32(file)),
        "the next request's own answer"
    );
}

#[test]
fn a_resume_over_a_whole_partial_of_other_bytes_stores_the_file() {
    let shared = whole_partial_of_other_bytes();
    let mut server = TransferServer::new(&shared, vec![0; 1028], vec![0; 1028]).unwrap();
    server.start(Instant::ZERO);
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028]).unwrap();
    let file = b"hello, world\n";
    let mut put = client.put(name("f"), &file[..], PutOptions::RESUME, |_, _| {});
    let mut pipe = Pipe::new(&[1500], &[1500]);
    let outcome = pipe.run(&mut put, &mut server);
    assert_eq!(outcome.map(|s| s.crc), Ok(crc32(file)));
    assert_eq!(stored(&shared), [("f".to_owned(), file.to_vec())]);
}

/// A source that knows the CRC-32 of its first `checkpoint.0` bytes, and
/// remembers the lowest offset it was read at.
struct Checkpointed<'a> {
    data: &'a [u8],
    checkpoint: (u64, u32),
    lowest_read: u64,
}

impl FileSource for Checkpointed<'_> {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, LocalError> {
        self.lowest_read = self.lowest_read.min(offset);
        (&self.data[..]).read(offset, buf)
    }

    fn crc_checkpoint(&mut self, _len: u64) -> Option<(u64, u32)> {
        Some(self.checkpoint)
    }
}

/// Each stored file's name and bytes.
type Stored = Vec<(String, Vec<u8>)>;

/// Resumes an upload of `data` over a partial of its first 100,000 bytes,
/// with the source's `checkpoint`; gives the outcome, what the store then
/// holds, and the lowest offset the client read the source at.
fn resume_with_checkpoint(
    data: &[u8],
    checkpoint: (u64, u32),
) -> (Result<FileStat, ClientError>, Stored, u64) {
    let shared = SharedStore::new(Store::new(), [UploadLease::EMPTY; 1]);
    shared
        .with_store(|s| {
            let mut up = s.begin_upload(&name("big"), 120_000, false).unwrap();
            s.append(&mut up, &data[..100_000]).unwrap();
        })
        .unwrap();
    let mut server = TransferServer::new(&shared, vec![0; 1028], vec![0; 1028]).unwrap();
    server.start(Instant::ZERO);
    let mut source = Checkpointed {
        data,
        checkpoint,
        lowest_read: u64::MAX,
    };
    let mut client = TransferClient::new(vec![0; 1028], vec![0; 1028]).unwrap();
    let options = PutOptions {
        resume: true,
        crc: Some(crc32(data)),
    };
    let outcome = {
        let mut put = client.put(name("big"), &mut source, options, |_, _| {});
        Pipe::new(&[1500], &[1500]).run(&mut put, &mut server)
    };
    (outcome, stored(&shared), source.lowest_read)
}

#[test]
fn a_resume_checks_its_prefix_from_the_source_s_checkpoint_on() {
    let data = pattern(120_000, 3);
    let checkpoint = (80_000, crc32(&data[..80_000]));
    let (outcome, files, lowest_read) = resume_with_checkpoint(&data, checkpoint);
    assert_eq!(outcome.map(|s| s.crc), Ok(crc32(&data)));
    assert_eq!(files, [("big".to_owned(), data.clone())]);
    assert_eq!(
        lowest_read, 80_000,
        "bytes before the checkpoint are not read"
    );
}

#[test]
fn a_checkpoint_past_the_prefix_is_not_used_and_a_wrong_one_starts_over() {
    let data = pattern(120_000, 3);
    // Past the 100,000 bytes the server holds: the client reads them all.
    let past = (110_000, crc32(&data[..110_000]));
    let (outcome, files, lowest_read) = resume_with_checkpoint(&data, past);
    assert_eq!(outcome.map(|s| s.crc), Ok(crc32(&data)));
    assert_eq!(files, [("big".to_owned(), data.clone())]);
    assert_eq!(lowest_read, 0);
    // A checkpoint that is not the file's: the prefix does not match, the
    // upload starts over at 0, and the stored file is still the right one.
    let wrong = (80_000, crc32(&data[..80_000]) ^ 1);
    let (outcome, files, lowest_read) = resume_with_checkpoint(&data, wrong);
    assert_eq!(outcome.map(|s| s.crc), Ok(crc32(&data)));
    assert_eq!(files, [("big".to_owned(), data)]);
    assert_eq!(lowest_read, 0);
}
