//! The file transfer service end to end over the in-process link: the server's
//! sessions on a `TcpServer` pool of four slots over a `RamStore`, driven by the
//! `no_std` client's operations on `TcpSession`s and by raw frames written from
//! PROTOCOL.md.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::Poll;

use smolsock::net::{
    ClientState, PortAllocator, RecvError, ServerConfig, Service, StreamingFrames, TcpClient,
    TcpServer, TcpSession,
};
use smolsock::runner::sim::{Direction, FaultConfig, SERVER_V4, SimConfig, SimNet};
use smolsock::session::Request;
use smolsock::store::{FileName, FileStat, RamStore, Storage};
use smolsock::transfer::{
    ClientError, FileSink, LocalError, PutOptions, SharedStore, TransferClient, TransferServer,
    UploadLease,
};
use smolsock::wire::crc32::crc32;
use smolsock::wire::frame::HeaderFormat;
use smolsock::wire::transfer::{ErrorCode, Message};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

const PORT: u16 = 2121;
/// The frame body limit of both ends in most tests.
const BODY: usize = 2048;
const FRAME: usize = BODY + 4;
/// File bytes in one full DATA frame.
const CHUNK: usize = BODY - 9;
const SLOTS: usize = 4;
const CLIENTS: usize = 4;
const SOCKET_BUF: usize = 4 * 1024;
/// Virtual time any one step of a test may take.
const LIMIT: Duration = Duration::from_secs(20_000);
/// How long server and client wait for a silent peer in these tests.
const PATIENCE: Duration = Duration::from_secs(600);

type Slot<S> = TransferServer<'static, S, Vec<u8>>;

fn tcp_socket(buffer: usize) -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; buffer]),
        tcp::SocketBuffer::new(vec![0; buffer]),
    )
}

/// Bytes that differ at every position, so a shifted or repeated chunk shows.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn name(s: &str) -> FileName {
    FileName::new(s).unwrap()
}

fn body(message: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0; message.buffer_len()];
    message.emit(&mut out).unwrap();
    out
}

fn error(code: ErrorCode, value: u64) -> Vec<u8> {
    body(&Message::Error { code, value })
}

/// Raw framing of a client socket, for the tests that speak bytes: whole frames
/// gathered from the pieces `StreamingFrames` hands out, up to 128 KiB.
struct RawFrames {
    framing: StreamingFrames,
    /// The body of the frame being received.
    partial: Vec<u8>,
    /// Whole frames not taken yet.
    whole: VecDeque<Vec<u8>>,
}

impl RawFrames {
    fn new() -> Self {
        Self {
            framing: StreamingFrames::new(HeaderFormat::NETWORK.with_max_len(1 << 17).unwrap()),
            partial: Vec::new(),
            whole: VecDeque::new(),
        }
    }

    fn reset(&mut self) {
        self.framing.reset();
        self.partial.clear();
        self.whole.clear();
    }

    /// The next whole frame, `None` while there is none yet, or how the stream
    /// ended once every frame was taken.
    fn recv_frame(&mut self, socket: &mut tcp::Socket<'_>) -> Result<Option<Vec<u8>>, RecvError> {
        if let Some(frame) = self.whole.pop_front() {
            return Ok(Some(frame));
        }
        let Self { partial, whole, .. } = self;
        let received = self.framing.recv_pieces(socket, |piece| {
            partial.extend_from_slice(piece.bytes);
            if piece.ends_frame {
                whole.push_back(std::mem::take(partial));
            }
            piece.bytes.len()
        });
        match self.whole.pop_front() {
            Some(frame) => Ok(Some(frame)),
            None => received.map(|_| None),
        }
    }
}

/// The server's pool, its shared store, and four client sockets on the sim link.
struct Rig<S: Storage + 'static> {
    net: SimNet<'static>,
    server: TcpServer<Slot<S>, SLOTS>,
    shared: &'static SharedStore<S>,
    clients: Vec<SocketHandle>,
    /// Raw framing of each client socket, for tests that speak bytes.
    streams: Vec<RawFrames>,
    connectors: Vec<TcpClient>,
    ports: PortAllocator,
}

impl<S: Storage + 'static> Rig<S> {
    fn new(store: S, config: SimConfig) -> Self {
        Self::with_options(store, config, FRAME, ServerConfig::DEFAULT)
    }

    /// For a rough link, where smoltcp's retransmission timer backs off up to a
    /// minute: the server waits ten minutes for a silent peer.
    fn patient(store: S, config: SimConfig) -> Self {
        let server = ServerConfig {
            idle_timeout: Some(PATIENCE.into()),
            ..ServerConfig::DEFAULT
        };
        Self::with_options(store, config, FRAME, server)
    }

    fn with_options(store: S, config: SimConfig, frame: usize, server: ServerConfig) -> Self {
        Self::with_buffers(store, config, frame, server, SOCKET_BUF)
    }

    /// With socket buffers of `buffer` bytes each way, on both hosts.
    fn with_buffers(
        store: S,
        config: SimConfig,
        frame: usize,
        server: ServerConfig,
        buffer: usize,
    ) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let shared: &'static SharedStore<S> = Box::leak(Box::new(SharedStore::new(
            store,
            [UploadLease::EMPTY; SLOTS],
        )));
        let mut net: SimNet<'static> = SimNet::new(
            config,
            SocketSet::new(Vec::new()),
            SocketSet::new(Vec::new()),
        );
        let handles: [SocketHandle; SLOTS] =
            std::array::from_fn(|_| net.server.sockets.add(tcp_socket(buffer)));
        let slots: [Slot<S>; SLOTS] = std::array::from_fn(|_| {
            TransferServer::new(shared, vec![0; frame], vec![0; frame]).unwrap()
        });
        // Listening from here on: the first SYN finds every slot ready.
        let server = TcpServer::new(&mut net.server.sockets, PORT, handles, slots)
            .unwrap()
            .with_config(server);
        let clients = (0..CLIENTS)
            .map(|_| net.client.sockets.add(tcp_socket(buffer)))
            .collect();
        Self {
            net,
            server,
            shared,
            clients,
            streams: (0..CLIENTS).map(|_| RawFrames::new()).collect(),
            connectors: vec![TcpClient::new(Duration::from_secs(10)); CLIENTS],
            ports: PortAllocator::new(7),
        }
    }

    /// Polls the link and the server until `until` holds.
    fn run<R>(&mut self, mut until: impl FnMut(&mut SimNet<'static>) -> Option<R>) -> R {
        self.net
            .run_services(&mut self.server, &mut (), LIMIT, |_, _, net| until(net))
            .expect("the sim ran out of time")
    }

    fn socket(&mut self, i: usize) -> &mut tcp::Socket<'static> {
        self.net
            .client
            .sockets
            .get_mut::<tcp::Socket>(self.clients[i])
    }

    /// Connects client socket `i` to the server (dropping whatever it had).
    fn connect(&mut self, i: usize) {
        if self.socket(i).is_open() {
            self.socket(i).abort();
            self.run(|_| Some(()));
        }
        self.streams[i].reset();
        let now = self.net.now();
        let handle = self.clients[i];
        let (socket, cx) = self
            .net
            .client
            .socket_and_context::<tcp::Socket>(handle)
            .unwrap();
        self.connectors[i]
            .connect(cx, socket, (SERVER_V4, PORT), &mut self.ports, now)
            .unwrap();
        let Self {
            net,
            server,
            connectors,
            ..
        } = self;
        let connector = &mut connectors[i];
        net.run_services(server, &mut (), LIMIT, |_, _, net| {
            let now = net.now();
            match connector.poll(net.client.sockets.get_mut(handle), now) {
                ClientState::Connected => Some(()),
                ClientState::Failed(e) => panic!("connect failed: {e}"),
                _ => None,
            }
        })
        .unwrap();
    }

    /// Polls the client host's sockets with `poll` after every turn of the link
    /// and the server, until it is ready.
    fn drive<T>(&mut self, mut poll: impl FnMut(&mut SocketSet<'static>, Instant) -> Poll<T>) -> T {
        self.run(|net| {
            let now = net.now();
            match poll(&mut net.client.sockets, now) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => None,
            }
        })
    }

    /// A client operation on socket `i`, to be driven by `poll_request`.
    fn session<R: Request>(&self, i: usize, op: R) -> TcpSession<R> {
        TcpSession::new(self.clients[i], op)
    }

    /// Runs a client operation on socket `i` until its outcome.
    fn request<R: Request>(&mut self, i: usize, op: R) -> R::Output {
        let mut conn = self.session(i, op);
        self.drive(|sockets, now| conn.poll_request(sockets, now).unwrap())
    }

    /// Queues raw bytes on socket `i`, all of them.
    fn send_raw(&mut self, i: usize, bytes: &[u8]) {
        let handle = self.clients[i];
        let mut sent = 0;
        self.run(|net| {
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            sent += socket.send_slice(&bytes[sent..]).unwrap_or(0);
            (sent == bytes.len()).then_some(())
        });
    }

    fn send_frame(&mut self, i: usize, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_raw(i, &frame);
    }

    /// The next frame the server sends on connection `i`, or how the stream ended.
    fn recv(&mut self, i: usize) -> Result<Vec<u8>, RecvError> {
        let handle = self.clients[i];
        let Self {
            net,
            server,
            streams,
            ..
        } = self;
        let stream = &mut streams[i];
        net.run_services(server, &mut (), LIMIT, |_, _, net| {
            let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
            match stream.recv_frame(socket) {
                Ok(Some(frame)) => Some(Ok(frame.to_vec())),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .unwrap()
    }

    fn recv_frame(&mut self, i: usize) -> Vec<u8> {
        self.recv(i).expect("the server closed the connection")
    }

    /// Sends one request and returns the first frame of the answer.
    fn call(&mut self, i: usize, request: &[u8]) -> Vec<u8> {
        self.send_frame(i, request);
        self.recv_frame(i)
    }

    /// Connects socket `i` and does the HELLO exchange in raw frames.
    fn open(&mut self, i: usize) {
        self.connect(i);
        let reply = self.call(
            i,
            &body(&Message::Hello {
                version: 1,
                max_body: BODY as u32,
            }),
        );
        assert!(matches!(
            Message::parse(&reply),
            Ok(Message::HelloOk { version: 1, .. })
        ));
    }

    /// A new connection on socket `i` can still list: the server is healthy.
    fn assert_healthy(&mut self, i: usize) {
        self.open(i);
        self.send_frame(i, &body(&Message::List));
        // A listing of the few files these tests store: one that never ends
        // fails here.
        for entries in 0.. {
            assert!(entries <= 1_000, "a listing of over 1,000 entries");
            let frame = self.recv_frame(i);
            match Message::parse(&frame).unwrap() {
                Message::Entry { .. } => {}
                Message::ListEnd { .. } => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn stored(&self, file: &str) -> Option<Vec<u8>> {
        let file = name(file);
        self.shared
            .with_store(|store| {
                let stat = store.stat(&file).ok()?;
                let mut data = vec![0; stat.size as usize];
                let n = store.read(&file, 0, &mut data).unwrap();
                assert_eq!(n, data.len());
                assert_eq!(crc32(&data), stat.crc);
                Some(data)
            })
            .unwrap()
    }

    fn put_into_store(&self, file: &str, data: &[u8]) {
        self.shared
            .with_store(|store| {
                let mut upload = store.begin_upload(&name(file), data.len() as u64, false)?;
                store.append(&mut upload, data)?;
                store.commit(&upload, crc32(data))
            })
            .unwrap()
            .unwrap();
    }
}

/// A download kept in memory, with what it was told.
#[derive(Debug, Default)]
struct VecSink {
    data: Vec<u8>,
    completed: Option<FileStat>,
    restarts: usize,
}

impl FileSink for VecSink {
    fn held(&mut self) -> Result<(u64, u32), LocalError> {
        Ok((self.data.len() as u64, crc32(&self.data)))
    }

    fn restart(&mut self) -> Result<(), LocalError> {
        self.data.clear();
        self.completed = None;
        self.restarts += 1;
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), LocalError> {
        assert_eq!(offset, self.data.len() as u64, "writes come in order");
        assert!(self.completed.is_none());
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn complete(&mut self, stat: FileStat) -> Result<(), LocalError> {
        self.completed = Some(stat);
        Ok(())
    }
}

fn new_client() -> TransferClient<Vec<u8>> {
    TransferClient::new(vec![0; FRAME], vec![0; FRAME])
        .unwrap()
        .with_timeout(Some(PATIENCE.into()))
}

/// Progress values must never go back and must end at the total.
fn assert_progress(seen: &[(u64, u64)], total: u64) {
    assert!(!seen.is_empty(), "progress was reported");
    assert!(seen.iter().all(|&(_, t)| t == total), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "monotonic: {seen:?}"
    );
    assert!(seen.iter().all(|&(d, t)| d <= t));
    assert_eq!(seen.last().unwrap().0, total);
}

/// Uploads `data` as `file` with the no_std client and checks what it reports.
fn put<S: Storage>(
    rig: &mut Rig<S>,
    client: &mut TransferClient<Vec<u8>>,
    i: usize,
    file: &str,
    data: &[u8],
    options: PutOptions,
) -> Result<(FileStat, Vec<(u64, u64)>), ClientError> {
    let mut seen = Vec::new();
    let op = client.put(name(file), data, options, |done, total| {
        seen.push((done, total))
    });
    let result = rig.request(i, op);
    result.map(|stat| (stat, seen))
}

/// Downloads `file` with the no_std client into `sink`.
fn get<S: Storage>(
    rig: &mut Rig<S>,
    client: &mut TransferClient<Vec<u8>>,
    i: usize,
    file: &str,
    sink: &mut VecSink,
    resume: bool,
) -> Result<(FileStat, Vec<(u64, u64)>), ClientError> {
    let mut seen = Vec::new();
    let op = client.get(name(file), &mut *sink, resume, |done, total| {
        seen.push((done, total))
    });
    let result = rig.request(i, op);
    result.map(|stat| (stat, seen))
}

/// Up, stat, down, compare: every byte, the CRC, the progress, the frame count.
fn round_trip<S: Storage>(rig: &mut Rig<S>, file: &str, data: &[u8]) {
    let mut client = new_client();
    rig.connect(0);
    let (stat, seen) = put(rig, &mut client, 0, file, data, PutOptions::FRESH).unwrap();
    assert_eq!(
        stat,
        FileStat {
            size: data.len() as u64,
            crc: crc32(data)
        }
    );
    assert_progress(&seen, data.len() as u64);
    // HELLO, PUT, and one DATA per started chunk.
    let data_frames = data.len().div_ceil(CHUNK) as u64;
    assert_eq!(client.framed_stats().write.frames, 2 + data_frames);
    assert_eq!(rig.stored(file).as_deref(), Some(data), "stored exactly");

    let stat = rig.request(0, client.stat(name(file))).unwrap();
    assert_eq!(stat.size, data.len() as u64);

    let mut sink = VecSink::default();
    let (got, seen) = get(rig, &mut client, 0, file, &mut sink, false).unwrap();
    assert_eq!(got, stat);
    assert_progress(&seen, data.len() as u64);
    assert!(sink.data == data, "downloaded exactly");
    assert_eq!(sink.completed, Some(stat));
    // HELLO_OK, PUT_READY, PUT_DONE, STAT_OK, GET_READY, and the DATA frames.
    assert_eq!(client.framed_stats().read.frames, 5 + data_frames);
}

fn small_store() -> RamStore<8, 65_536> {
    RamStore::new()
}

#[test]
fn files_of_edge_sizes_go_up_and_down_whole_over_a_clean_link() {
    let mut rig = Rig::new(small_store(), SimConfig::new(1));
    for (i, len) in [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]
        .into_iter()
        .enumerate()
    {
        round_trip(&mut rig, &format!("f{len}"), &pattern(len, i as u32));
    }
    let stats = rig.shared.stats();
    assert_eq!(stats.uploads_done, 5);
    assert_eq!(stats.downloads_done, 5);
    assert_eq!(stats.errors.total(), 0);
}

#[test]
fn files_of_edge_sizes_go_up_and_down_whole_over_a_rough_link() {
    let mut rig = Rig::patient(
        small_store(),
        SimConfig::new(2).with_faults(FaultConfig::ROUGH),
    );
    for (i, len) in [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17]
        .into_iter()
        .enumerate()
    {
        round_trip(&mut rig, &format!("f{len}"), &pattern(len, 10 + i as u32));
    }
    assert!(rig.net.stats().client_to_server.lost > 0);
    assert!(rig.net.stats().server_to_client.lost > 0);
}

static BIG_CLEAN: Mutex<RamStore<4, { 6 << 20 }>> = Mutex::new(RamStore::new());
static BIG_ROUGH: Mutex<RamStore<4, { 6 << 20 }>> = Mutex::new(RamStore::new());

/// A store in a `static` (off the test thread's stack), kept for this test alone.
fn leak_locked<T>(store: &'static Mutex<T>) -> &'static mut T {
    let guard: &'static mut std::sync::MutexGuard<'static, T> =
        Box::leak(Box::new(store.lock().unwrap()));
    guard
}

#[test]
fn five_mib_go_up_and_down_whole_over_a_clean_link() {
    let mut rig = Rig::new(leak_locked(&BIG_CLEAN), SimConfig::new(3));
    round_trip(&mut rig, "big.bin", &pattern(5 << 20, 3));
}

#[test]
fn five_mib_go_up_and_down_whole_over_a_rough_link() {
    let mut rig = Rig::patient(
        leak_locked(&BIG_ROUGH),
        SimConfig::new(4).with_faults(FaultConfig::ROUGH),
    );
    round_trip(&mut rig, "big.bin", &pattern(5 << 20, 4));
    assert!(rig.net.stats().client_to_server.lost > 100);
}

impl<S: Storage + 'static> Rig<S> {
    /// Lets `duration` of virtual time pass with the server running.
    fn idle(&mut self, duration: Duration) {
        let _ = self
            .net
            .run_services(&mut self.server, &mut (), duration, |_, _, _| None::<()>);
    }

    /// Cuts the link both ways (every frame lost) or mends it.
    fn set_link(&mut self, faults: FaultConfig) {
        self.net.set_faults(Direction::ClientToServer, faults);
        self.net.set_faults(Direction::ServerToClient, faults);
    }

    /// Whether a listing and a STAT show `file`.
    fn visible(&self, file: &str) -> (bool, bool) {
        let file = name(file);
        self.shared
            .with_store(|store| {
                let mut listed = false;
                let mut after = None;
                while let Some(entry) = store.next_entry(after.as_ref()).unwrap() {
                    listed |= entry.name == file;
                    after = Some(entry.name);
                }
                (listed, store.stat(&file).is_ok())
            })
            .unwrap()
    }
}

const DEAD: FaultConfig = FaultConfig::CLEAN.with_loss(1000);

#[test]
fn an_upload_cut_mid_way_shows_nothing_and_resumes_to_the_right_checksum() {
    let mut rig = Rig::new(small_store(), SimConfig::new(5));
    let data = pattern(48 * 1024, 5);
    let mut client = new_client();
    rig.connect(0);
    let done = std::cell::Cell::new(0u64);
    let op = client.put(name("log.bin"), &data[..], PutOptions::RESUME, |d, _| {
        done.set(d)
    });
    let mut conn = rig.session(0, op);
    rig.drive(
        |sockets, now| match conn.poll_request(sockets, now).unwrap() {
            Poll::Ready(result) => panic!("finished early: {result:?}"),
            Poll::Pending if done.get() >= 16 * 1024 => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        },
    );
    // The link dies; the client keeps trying for 30 s, then loses power.
    rig.set_link(DEAD);
    let cut_at = rig.net.now();
    rig.drive(
        |sockets, now| match conn.poll_request(sockets, now).unwrap() {
            Poll::Ready(result) => panic!("finished on a dead link: {result:?}"),
            Poll::Pending if now - cut_at >= Duration::from_secs(30) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        },
    );
    rig.socket(0).abort();
    assert_eq!(rig.visible("log.bin"), (false, false), "nothing visible");
    assert_eq!(
        rig.shared.with_store(|s| s.entries()),
        Some(1),
        "the partial stays"
    );
    rig.set_link(FaultConfig::CLEAN);

    // The server's slot still holds the dead connection: the name is busy.
    rig.connect(0);
    client.reset();
    let busy = put(
        &mut rig,
        &mut client,
        0,
        "log.bin",
        &data,
        PutOptions::RESUME,
    );
    assert_eq!(busy.unwrap_err().code(), Some(ErrorCode::Busy));
    let mut listing = Vec::new();
    assert_eq!(
        rig.request(0, client.list(|entry| listing.push(entry))),
        Ok(0)
    );
    assert!(listing.is_empty());
    let missing = rig.request(0, client.stat(name("log.bin")));
    assert_eq!(missing.unwrap_err().code(), Some(ErrorCode::NotFound));

    // Once the server gave up on the dead peer, the upload resumes: the upload
    // fell below the minimum rate (500 B/s) before the idle timeout (60 s) came,
    // which the second connection, silent meanwhile, reached.
    rig.idle(Duration::from_secs(61));
    assert_eq!(rig.shared.stats().slow_transfers, 1);
    assert_eq!(rig.server.stats().idle_timeouts, 1);
    rig.connect(0);
    client.reset();
    let (stat, seen) = put(
        &mut rig,
        &mut client,
        0,
        "log.bin",
        &data,
        PutOptions::RESUME,
    )
    .unwrap();
    assert_eq!(stat.crc, crc32(&data));
    assert!(
        seen[0].0 >= 8 * 1024,
        "resumed, not restarted: {:?}",
        seen[0]
    );
    assert_progress(&seen, data.len() as u64);
    assert_eq!(rig.stored("log.bin").unwrap(), data);
    let stats = rig.shared.stats();
    assert_eq!((stats.uploads_resumed, stats.uploads_done), (1, 1));
    assert_eq!(stats.bytes_in, data.len() as u64, "no byte stored twice");
}

#[test]
fn a_download_cut_mid_way_is_never_completed_and_resumes_to_the_right_checksum() {
    let mut rig = Rig::new(small_store(), SimConfig::new(6));
    let data = pattern(48 * 1024, 6);
    rig.put_into_store("config.bin", &data);
    let mut client = new_client();
    let mut sink = VecSink::default();
    rig.connect(0);
    let op = client.get(name("config.bin"), &mut sink, false, |_, _| {});
    let mut conn = rig.session(0, op);
    rig.drive(
        |sockets, now| match conn.poll_request(sockets, now).unwrap() {
            Poll::Ready(result) => panic!("finished early: {result:?}"),
            Poll::Pending if conn.session().sink().data.len() >= 16 * 1024 => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        },
    );
    rig.set_link(DEAD);
    rig.idle(Duration::from_secs(30));
    rig.socket(0).abort();
    assert!(sink.completed.is_none(), "a partial download is not a file");
    let held = sink.data.len();
    assert!(held >= 16 * 1024 && held < data.len());
    assert!(sink.data == data[..held]);

    rig.set_link(FaultConfig::CLEAN);
    rig.connect(0);
    client.reset();
    let (stat, seen) = get(&mut rig, &mut client, 0, "config.bin", &mut sink, true).unwrap();
    assert_eq!(stat.crc, crc32(&data));
    assert_eq!(seen[0].0, held as u64, "resumed where it stopped");
    assert_progress(&seen, data.len() as u64);
    assert!(sink.data == data);
    assert_eq!(sink.completed, Some(stat));
    assert_eq!(
        sink.restarts, 1,
        "only the first, fresh download restarted the sink"
    );
}

#[test]
fn a_client_whose_dropped_operation_left_the_connection_half_way_must_reconnect() {
    let mut rig = Rig::new(small_store(), SimConfig::new(7));
    rig.put_into_store("a", &pattern(20_000, 7));
    let mut client = new_client();
    let mut sink = VecSink::default();
    rig.connect(0);
    let op = client.get(name("a"), &mut sink, false, |_, _| {});
    let mut conn = rig.session(0, op);
    rig.drive(
        |sockets, now| match conn.poll_request(sockets, now).unwrap() {
            Poll::Pending if !conn.session().sink().data.is_empty() => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => panic!("{result:?}"),
        },
    );
    // Abandoned half way (`conn` is not polled again): the server's next words
    // belong to the download.
    assert_eq!(
        rig.request(0, client.stat(name("a"))),
        Err(ClientError::Unusable)
    );
    rig.connect(0);
    client.reset();
    assert_eq!(rig.request(0, client.stat(name("a"))).unwrap().size, 20_000);
}

#[test]
fn a_resumed_upload_over_a_partial_of_other_bytes_starts_again_from_zero() {
    let mut rig = Rig::new(small_store(), SimConfig::new(8));
    let old = pattern(10_000, 80);
    rig.shared
        .with_store(|store| {
            let mut upload = store.begin_upload(&name("doc"), 10_000, false).unwrap();
            store.append(&mut upload, &old[..6000]).unwrap();
        })
        .unwrap();
    let data = pattern(10_000, 81);
    let mut client = new_client();
    rig.connect(0);
    let (stat, seen) = put(&mut rig, &mut client, 0, "doc", &data, PutOptions::RESUME).unwrap();
    assert_eq!(stat.crc, crc32(&data));
    assert_eq!(seen[0].0, 0, "started over");
    assert_progress(&seen, 10_000);
    assert_eq!(rig.stored("doc").unwrap(), data);
    let stats = rig.shared.stats();
    assert_eq!((stats.uploads, stats.uploads_resumed), (2, 1));
}

#[test]
fn a_resumed_download_over_a_stale_or_overlong_local_copy_starts_again_from_zero() {
    let mut rig = Rig::new(small_store(), SimConfig::new(9));
    let data = pattern(9_000, 9);
    rig.put_into_store("cfg", &data);
    let mut client = new_client();
    rig.connect(0);
    for stale in [pattern(3000, 90), pattern(12_000, 91), pattern(9000, 92)] {
        let mut sink = VecSink {
            data: stale,
            ..VecSink::default()
        };
        let (stat, seen) = get(&mut rig, &mut client, 0, "cfg", &mut sink, true).unwrap();
        assert_eq!(stat.crc, crc32(&data));
        assert!(sink.data == data);
        assert_eq!(sink.restarts, 1);
        assert_eq!(seen[0].0, 0);
        assert_progress(&seen, 9000);
    }
}

/// Downloads `file` on connection 0, lets `meanwhile` change the store once the
/// first bytes have arrived, and returns the outcome, with how many bytes the sink
/// held when the store changed.
fn download_while<S: Storage>(
    rig: &mut Rig<S>,
    client: &mut TransferClient<Vec<u8>>,
    sink: &mut VecSink,
    file: &str,
    meanwhile: impl Fn(&mut S),
) -> (Result<FileStat, ClientError>, usize) {
    rig.connect(0);
    let op = client.get(name(file), &mut *sink, false, |_, _| {});
    let mut conn = rig.session(0, op);
    let mut changed_at = None;
    let shared = rig.shared;
    let result = rig.drive(|sockets, now| {
        let held = conn.session().sink().data.len();
        if changed_at.is_none() && held > 0 {
            changed_at = Some(held);
            shared.with_store(&meanwhile).unwrap();
        }
        conn.poll_request(sockets, now).unwrap()
    });
    (result, changed_at.expect("the store changed mid-download"))
}

#[test]
fn a_file_replaced_during_its_download_ends_it_with_changed_and_no_spliced_byte() {
    let mut rig = Rig::new(small_store(), SimConfig::new(10));
    let (old, new) = (pattern(30_000, 100), pattern(30_000, 101));
    rig.put_into_store("fw.bin", &old);
    let mut client = new_client();
    let mut sink = VecSink::default();
    let (result, changed_at) =
        download_while(&mut rig, &mut client, &mut sink, "fw.bin", |store| {
            let mut upload = store.begin_upload(&name("fw.bin"), 30_000, false).unwrap();
            store.append(&mut upload, &new).unwrap();
            store.commit(&upload, crc32(&new)).unwrap();
        });
    // The server noticed before its next DATA: an ERROR took that DATA's place.
    assert_eq!(
        result,
        Err(ClientError::Refused {
            code: ErrorCode::Changed,
            value: 0
        })
    );
    // What arrived is a prefix of the old version, and no byte of the new one:
    // the DATA already on its way when the file changed, then nothing.
    let held = sink.data.len();
    assert!(held >= changed_at && held < old.len(), "{held}");
    assert!(sink.data == old[..held], "only the old version's bytes");
    assert!(sink.completed.is_none(), "a cut download is not a file");
    let stats = rig.shared.stats();
    assert_eq!(stats.downloads_changed, 1);
    assert_eq!(stats.downloads_done, 0);
    assert_eq!(stats.errors.get(ErrorCode::Changed), 1);
    assert_eq!(
        stats.bytes_out, held as u64,
        "every byte sent was the old version's"
    );
    // The ERROR ended the request and the connection goes on. A GET resuming
    // from the old prefix finds it is not the new version's and starts over.
    let stat = rig.request(0, client.stat(name("fw.bin"))).unwrap();
    assert_eq!(stat.crc, crc32(&new));
    let (got, seen) = get(&mut rig, &mut client, 0, "fw.bin", &mut sink, true).unwrap();
    assert_eq!(got, stat);
    assert!(sink.data == new);
    assert_eq!(sink.completed, Some(stat));
    assert_eq!(seen[0].0, 0, "started over");
    assert_progress(&seen, 30_000);
    assert_eq!(
        sink.restarts, 2,
        "the first download, then the stale prefix"
    );
}

#[test]
fn a_file_deleted_during_its_download_ends_it_with_not_found() {
    let mut rig = Rig::new(small_store(), SimConfig::new(25));
    let old = pattern(30_000, 250);
    rig.put_into_store("gone.bin", &old);
    let mut client = new_client();
    let mut sink = VecSink::default();
    let (result, _) = download_while(&mut rig, &mut client, &mut sink, "gone.bin", |store| {
        store.delete(&name("gone.bin")).unwrap();
    });
    assert_eq!(
        result,
        Err(ClientError::Refused {
            code: ErrorCode::NotFound,
            value: 0
        })
    );
    assert!(sink.data == old[..sink.data.len()] && sink.completed.is_none());
    assert_eq!(rig.shared.stats().downloads_changed, 1);
    // The connection goes on.
    let missing = rig.request(0, client.stat(name("gone.bin")));
    assert_eq!(missing.unwrap_err().code(), Some(ErrorCode::NotFound));
}

/// Request bodies with any name bytes, written from PROTOCOL.md section 6.
mod raw {
    pub fn put(name: &[u8], size: u64, crc: u32, flags: u8) -> Vec<u8> {
        let mut b = vec![0x02, flags];
        b.extend_from_slice(&size.to_be_bytes());
        b.extend_from_slice(&crc.to_be_bytes());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b
    }

    pub fn get(name: &[u8], offset: u64) -> Vec<u8> {
        let mut b = vec![0x03];
        b.extend_from_slice(&offset.to_be_bytes());
        b.push(name.len() as u8);
        b.extend_from_slice(name);
        b
    }

    pub fn stat(name: &[u8]) -> Vec<u8> {
        let mut b = vec![0x05, name.len() as u8];
        b.extend_from_slice(name);
        b
    }

    pub fn delete(name: &[u8]) -> Vec<u8> {
        let mut b = vec![0x06, name.len() as u8];
        b.extend_from_slice(name);
        b
    }

    pub fn data(offset: u64, bytes: &[u8]) -> Vec<u8> {
        let mut b = vec![0x10];
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(bytes);
        b
    }

    pub fn hello(version: u8, max_body: u32) -> Vec<u8> {
        let mut b = vec![0x01, b'S', b'S', b'F', b'T', version];
        b.extend_from_slice(&max_body.to_be_bytes());
        b
    }
}

fn put_ready(offset: u64, prefix_crc: u32) -> Vec<u8> {
    body(&Message::PutReady { offset, prefix_crc })
}

fn put_done(data: &[u8]) -> Vec<u8> {
    body(&Message::PutDone {
        size: data.len() as u64,
        crc: crc32(data),
    })
}

#[test]
fn every_refused_name_is_answered_invalid_name_and_the_connection_goes_on() {
    let mut rig = Rig::new(small_store(), SimConfig::new(11));
    rig.open(0);
    let refused: [&[u8]; 15] = [
        b"",
        &[b'a'; 65],
        b".",
        b"..",
        b"../etc/passwd",
        b".hidden",
        b"a/b",
        b"/abs",
        b"a\\b",
        b"a\0b",
        b"tab\there",
        b"del\x7f",
        "next\u{85}line".as_bytes(),
        &[0xff, 0xfe],
        &[b'a', 0xc3],
    ];
    for bad in refused {
        for request in [
            raw::put(bad, 1, 0, 0),
            raw::get(bad, 0),
            raw::stat(bad),
            raw::delete(bad),
        ] {
            assert_eq!(
                rig.call(0, &request),
                error(ErrorCode::InvalidName, 0),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
    assert_eq!(rig.shared.stats().errors.get(ErrorCode::InvalidName), 60);
    // The longest valid name, and names with spaces and non-ASCII, are fine.
    for good in [
        &[b'a'; 64][..],
        b"my notes.txt",
        "r\u{e9}sum\u{e9}.pdf".as_bytes(),
    ] {
        assert_eq!(rig.call(0, &raw::put(good, 0, 0, 0)), put_ready(0, 0));
        assert_eq!(rig.recv_frame(0), put_done(b""));
    }
    assert_eq!(rig.shared.with_store(|s| s.entries()), Some(3));
    rig.assert_healthy(1);
}

#[test]
fn more_data_than_announced_is_refused_whole_and_the_partial_deleted() {
    let mut rig = Rig::new(small_store(), SimConfig::new(12));
    rig.open(0);
    assert_eq!(
        rig.call(0, &raw::put(b"short", 5, crc32(b"hello"), 0)),
        put_ready(0, 0)
    );
    assert_eq!(
        rig.call(0, &raw::data(0, b"hello, ")),
        error(ErrorCode::TooMuchData, 5)
    );
    assert_eq!(
        rig.shared.with_store(|s| s.entries()),
        Some(0),
        "partial gone"
    );
    // DATA still in flight after the ERROR is dropped without an answer.
    rig.send_frame(0, &raw::data(7, b"world\n"));
    assert_eq!(
        rig.call(0, &raw::stat(b"short")),
        error(ErrorCode::NotFound, 0)
    );
    assert_eq!(rig.shared.stats().data_discarded, 1);
    // A lie that ends exactly one byte over, split across two frames.
    assert_eq!(rig.call(0, &raw::put(b"short", 5, 0, 0)), put_ready(0, 0));
    rig.send_frame(0, &raw::data(0, b"abc"));
    assert_eq!(
        rig.call(0, &raw::data(3, b"def")),
        error(ErrorCode::TooMuchData, 5)
    );
    assert_eq!(rig.shared.with_store(|s| s.entries()), Some(0));
    rig.assert_healthy(1);
}

#[test]
fn fewer_bytes_then_a_close_keep_the_partial_for_a_resume() {
    let mut rig = Rig::new(small_store(), SimConfig::new(13));
    let data = b"0123456789";
    rig.open(0);
    assert_eq!(
        rig.call(0, &raw::put(b"part", 10, crc32(data), 0)),
        put_ready(0, 0)
    );
    rig.send_frame(0, &raw::data(0, &data[..4]));
    // Half a DATA frame, then the client closes: the cut frame is dropped whole.
    let mut cut = (15u32).to_be_bytes().to_vec();
    cut.extend_from_slice(&raw::data(4, &data[4..7]));
    rig.send_raw(0, &cut);
    rig.socket(0).close();
    rig.idle(Duration::from_secs(2));
    assert_eq!(rig.server.active(), 0, "the server closed too");
    assert_eq!(rig.server.stats().closed, 1);
    assert_eq!(rig.visible("part"), (false, false));
    assert_eq!(rig.shared.stats().uploads_abandoned, 1);

    rig.open(1);
    assert_eq!(
        rig.call(1, &raw::put(b"part", 10, crc32(data), 1)),
        put_ready(4, crc32(&data[..4]))
    );
    assert_eq!(rig.call(1, &raw::data(4, &data[4..])), put_done(data));
    assert_eq!(rig.stored("part").unwrap(), data);
}

#[test]
fn a_wrong_checksum_keeps_nothing() {
    let mut rig = Rig::new(small_store(), SimConfig::new(14));
    rig.open(0);
    let data = b"hello, w0rld\n";
    assert_eq!(
        rig.call(0, &raw::put(b"copy.txt", 13, crc32(b"hello, world\n"), 0)),
        put_ready(0, 0)
    );
    assert_eq!(
        rig.call(0, &raw::data(0, data)),
        error(ErrorCode::ChecksumMismatch, u64::from(crc32(data)))
    );
    assert_eq!(rig.shared.with_store(|s| s.entries()), Some(0));
    // A resume after a mismatch starts from nothing.
    assert_eq!(
        rig.call(0, &raw::put(b"copy.txt", 13, crc32(b"hello, world\n"), 1)),
        put_ready(0, 0)
    );
    assert_eq!(
        rig.call(0, &raw::data(0, b"hello, world\n")),
        put_done(b"hello, world\n")
    );
    rig.assert_healthy(1);
}

#[test]
fn malformed_unknown_and_untimely_messages_get_their_documented_errors() {
    let mut rig = Rig::new(small_store(), SimConfig::new(15));
    rig.put_into_store("a", b"abc");
    rig.connect(0);
    // Before HELLO every request is unexpected; DATA is dropped silently.
    assert_eq!(
        rig.call(0, &raw::stat(b"a")),
        error(ErrorCode::Unexpected, 0)
    );
    assert_eq!(rig.call(0, &[0x04]), error(ErrorCode::Unexpected, 0));
    rig.send_frame(0, &raw::data(0, b"x"));
    // A version the server cannot serve, a limit under 128: still waiting for HELLO.
    assert_eq!(
        rig.call(0, &raw::hello(0, 1024)),
        error(ErrorCode::UnsupportedVersion, 1)
    );
    assert_eq!(
        rig.call(0, &raw::hello(1, 127)),
        error(ErrorCode::BadMessage, 0)
    );
    // A client newer than the server gets version 1.
    assert_eq!(
        rig.call(0, &raw::hello(9, 1024)),
        body(&Message::HelloOk {
            version: 1,
            max_body: BODY as u32
        })
    );
    let cases: [(&[u8], ErrorCode); 12] = [
        (&raw::hello(1, 1024), ErrorCode::Unexpected),
        (&[0x42, 0x00], ErrorCode::UnknownType),
        (&[0x00], ErrorCode::UnknownType),
        (&[0x7f], ErrorCode::UnknownType),
        (&[], ErrorCode::BadMessage),
        (&[0x04, 0x00], ErrorCode::BadMessage),
        (&[0x05, 0x05, b'a'], ErrorCode::BadMessage),
        (&[0x06], ErrorCode::BadMessage),
        (&raw::put(b"a", 1, 0, 0x02), ErrorCode::BadMessage),
        (&[0x03, 0, 0, 0], ErrorCode::BadMessage),
        (&body(&Message::DeleteOk), ErrorCode::Unexpected),
        (
            &body(&Message::Error {
                code: ErrorCode::Busy,
                value: 0,
            }),
            ErrorCode::Unexpected,
        ),
    ];
    for (request, code) in cases {
        assert_eq!(rig.call(0, request), error(code, 0), "{request:02x?}");
    }
    // Not found, and offsets past the end.
    assert_eq!(rig.call(0, &raw::stat(b"b")), error(ErrorCode::NotFound, 0));
    assert_eq!(
        rig.call(0, &raw::get(b"b", 0)),
        error(ErrorCode::NotFound, 0)
    );
    assert_eq!(
        rig.call(0, &raw::delete(b"b")),
        error(ErrorCode::NotFound, 0)
    );
    assert_eq!(
        rig.call(0, &raw::get(b"a", 4)),
        error(ErrorCode::BadOffset, 3)
    );
    // GET at the end is valid: GET_READY and no DATA (the next answer is STAT's).
    assert_eq!(
        rig.call(0, &raw::get(b"a", 3)),
        body(&Message::GetReady {
            size: 3,
            crc: crc32(b"abc"),
            prefix_crc: crc32(b"abc")
        })
    );
    assert_eq!(
        rig.call(0, &raw::stat(b"a")),
        body(&Message::StatOk {
            size: 3,
            crc: crc32(b"abc")
        })
    );
    // DATA at the wrong offset ends the upload; the partial keeps what came before.
    assert_eq!(rig.call(0, &raw::put(b"c", 6, 0, 0)), put_ready(0, 0));
    rig.send_frame(0, &raw::data(0, b"ab"));
    assert_eq!(
        rig.call(0, &raw::data(3, b"d")),
        error(ErrorCode::BadOffset, 2)
    );
    assert_eq!(
        rig.call(0, &raw::put(b"c", 6, 0, 1)),
        put_ready(2, crc32(b"ab"))
    );
    let stats = rig.shared.stats();
    assert_eq!(stats.errors.get(ErrorCode::UnknownType), 3);
    assert_eq!(stats.errors.get(ErrorCode::Unexpected), 5);
    assert_eq!(stats.data_discarded, 1);
    rig.assert_healthy(1);
}

#[test]
fn a_frame_over_the_limit_is_answered_then_the_connection_closes() {
    let mut rig = Rig::new(small_store(), SimConfig::new(16));
    for (i, len) in [BODY as u32 + 1, u32::MAX].into_iter().enumerate() {
        rig.open(i);
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0x10; 100]);
        rig.send_raw(i, &frame);
        assert_eq!(
            rig.recv(i),
            Ok(error(ErrorCode::FrameTooLarge, BODY as u64))
        );
        assert_eq!(rig.recv(i), Err(RecvError::Finished), "closed after it");
    }
    // A body of exactly the limit is fine.
    rig.open(2);
    let at_limit = raw::data(0, &[0; BODY - 9]);
    assert_eq!(at_limit.len(), BODY);
    rig.send_frame(2, &at_limit);
    assert_eq!(rig.call(2, &[0x04]), body(&Message::ListEnd { count: 0 }));
    rig.assert_healthy(3);
}

#[test]
fn a_bad_magic_is_answered_then_the_connection_closes() {
    let mut rig = Rig::new(small_store(), SimConfig::new(17));
    rig.connect(0);
    let mut hello = raw::hello(1, 1024);
    hello[1..5].copy_from_slice(b"HTTP");
    assert_eq!(rig.call(0, &hello), error(ErrorCode::BadMessage, 0));
    assert_eq!(rig.recv(0), Err(RecvError::Finished));
    rig.assert_healthy(1);
}

#[test]
fn a_full_store_refuses_uploads_with_its_limits() {
    let mut rig = Rig::new(RamStore::<3, 4096>::new(), SimConfig::new(18));
    rig.put_into_store("a", &[1; 3000]);
    rig.open(0);
    assert_eq!(
        rig.call(0, &raw::put(b"big", 1 << 20, 0, 0)),
        error(ErrorCode::FileTooLarge, 4096)
    );
    assert_eq!(
        rig.call(0, &raw::put(b"b", 2000, 0, 0)),
        error(ErrorCode::Full, 1096)
    );
    assert_eq!(rig.call(0, &raw::put(b"b", 96, 0, 0)), put_ready(0, 0));
    assert_eq!(rig.call(0, &raw::put(b"c", 0, 0, 0)), put_ready(0, 0));
    assert_eq!(rig.recv_frame(0), put_done(b""));
    // Three entries: "a", the partial of "b", "c". The partial counts as a
    // file, but no upload holds it any more: it gives way to a fourth.
    assert_eq!(rig.call(0, &raw::put(b"d", 0, 0, 0)), put_ready(0, 0));
    assert_eq!(rig.recv_frame(0), put_done(b""));
    assert_eq!(rig.shared.stats().partials_discarded, 1);
    // Three files, and nothing to give way: refused.
    assert_eq!(
        rig.call(0, &raw::put(b"e", 0, 0, 0)),
        error(ErrorCode::TooManyFiles, 3)
    );
    // Deleting frees room.
    assert_eq!(rig.call(0, &raw::delete(b"c")), body(&Message::DeleteOk));
    assert_eq!(rig.call(0, &raw::put(b"e", 0, 0, 0)), put_ready(0, 0));
    assert_eq!(rig.recv_frame(0), put_done(b""));
    let stats = rig.shared.stats();
    assert_eq!(stats.errors.get(ErrorCode::Full), 1);
    assert_eq!(stats.errors.get(ErrorCode::TooManyFiles), 1);
    rig.assert_healthy(1);
}

#[test]
fn a_name_being_uploaded_is_busy_for_other_connections_until_the_upload_ends() {
    let mut rig = Rig::new(small_store(), SimConfig::new(19));
    rig.put_into_store("x", b"old");
    rig.open(0);
    rig.open(1);
    assert_eq!(
        rig.call(0, &raw::put(b"x", 3, crc32(b"new"), 0)),
        put_ready(0, 0)
    );
    assert_eq!(
        rig.call(1, &raw::put(b"x", 3, 0, 1)),
        error(ErrorCode::Busy, 0)
    );
    assert_eq!(rig.call(1, &raw::delete(b"x")), error(ErrorCode::Busy, 0));
    // The committed file stays served unchanged meanwhile.
    assert_eq!(
        rig.call(1, &raw::stat(b"x")),
        body(&Message::StatOk {
            size: 3,
            crc: crc32(b"old")
        })
    );
    assert_eq!(rig.call(1, &raw::put(b"y", 1, 0, 0)), put_ready(0, 0));
    assert_eq!(rig.call(0, &raw::data(0, b"new")), put_done(b"new"));
    // Connection 1's PUT of "x" ends its own upload of "y" and is served.
    assert_eq!(
        rig.call(1, &raw::put(b"x", 1, crc32(b"!"), 0)),
        put_ready(0, 0)
    );
    // An upload ended by another request frees its name at once.
    assert_eq!(
        rig.call(1, &[0x04]),
        body(&Message::Entry {
            name: name("x"),
            size: 3
        })
    );
    assert_eq!(rig.recv_frame(1), body(&Message::ListEnd { count: 1 }));
    assert_eq!(rig.call(0, &raw::delete(b"x")), body(&Message::DeleteOk));
    assert_eq!(rig.visible("x"), (false, false));
    assert_eq!(rig.shared.stats().errors.get(ErrorCode::Busy), 2);
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

#[test]
fn whole_data_frames_before_an_oversize_header_are_kept_and_a_resume_starts_after_them() {
    // Socket buffers that hold the whole burst, so that the server may read the
    // three frames and the header at once.
    let mut rig = Rig::with_buffers(
        small_store(),
        SimConfig::new(26),
        65_540,
        ServerConfig::DEFAULT,
        64 * 1024,
    );
    let data = pattern(40_000, 26);
    rig.open(0);
    assert_eq!(
        rig.call(0, &raw::put(b"burst", 40_000, crc32(&data), 0)),
        put_ready(0, 0)
    );
    // Three DATA frames of 10,000 bytes and a header one over the server's
    // 65,536, with a little of its body, in one write.
    let mut burst = Vec::new();
    for chunk in 0..3 {
        let at = chunk * 10_000;
        burst.extend(frame(&raw::data(at as u64, &data[at..at + 10_000])));
    }
    burst.extend(65_537u32.to_be_bytes());
    burst.extend([0x10; 100]);
    assert_eq!(
        rig.socket(0).send_slice(&burst),
        Ok(burst.len()),
        "one write"
    );
    assert_eq!(
        rig.recv(0),
        Ok(error(ErrorCode::FrameTooLarge, 65_536)),
        "answered after the whole frames before the header"
    );
    assert_eq!(rig.recv(0), Err(RecvError::Finished), "then closed");
    let stats = rig.shared.stats();
    assert_eq!(stats.bytes_in, 30_000, "not a DATA frame lost");
    assert_eq!(stats.uploads_abandoned, 1);
    assert_eq!(stats.errors.get(ErrorCode::FrameTooLarge), 1);
    assert_eq!(rig.visible("burst"), (false, false));

    // The partial holds every byte of the three frames: the resume starts at 30,000.
    rig.open(1);
    assert_eq!(
        rig.call(1, &raw::put(b"burst", 40_000, crc32(&data), 1)),
        put_ready(30_000, crc32(&data[..30_000]))
    );
    assert_eq!(
        rig.call(1, &raw::data(30_000, &data[30_000..])),
        put_done(&data)
    );
    assert!(rig.stored("burst").unwrap() == data);
    assert_eq!(rig.shared.stats().bytes_in, 40_000, "no byte sent twice");
}

#[test]
fn a_message_trickled_a_byte_a_second_is_answered_request_timeout_at_the_deadline() {
    let mut rig = Rig::new(small_store(), SimConfig::new(27));
    rig.put_into_store("slow", b"abc");
    rig.open(0);
    // A STAT of a 40-byte name: 46 bytes, one a second. No second passes without
    // a byte, so the pool's idle timeout (60 s) never sees a silent peer; the
    // session's request deadline (10 s from the first byte) ends it.
    let name40 = [b'n'; 40];
    let stat = frame(&raw::stat(&name40));
    let handle = rig.clients[0];
    let first = rig.net.now();
    let (mut sent, mut next) = (0, first);
    let Rig {
        net,
        server,
        streams,
        ..
    } = &mut rig;
    let stream = &mut streams[0];
    let (reply, at) = loop {
        net.poll();
        let now = net.now();
        server.poll(&mut net.server.sockets, now);
        let socket = net.client.sockets.get_mut::<tcp::Socket>(handle);
        if sent < stat.len() && now >= next && socket.can_send() {
            sent += socket.send_slice(&stat[sent..sent + 1]).unwrap();
            next = now + Duration::from_secs(1);
        }
        if let Some(reply) = stream.recv_frame(socket).unwrap() {
            break (reply, now);
        }
        assert!(now - first < Duration::from_secs(60), "no answer");
        let hint = [server.poll_at(&net.server.sockets), Some(next)]
            .into_iter()
            .flatten()
            .min();
        net.advance(hint);
    };
    assert_eq!(reply, error(ErrorCode::RequestTimeout, 10_000));
    let late = at - first;
    assert!(
        late >= Duration::from_secs(10) && late < Duration::from_millis(10_100),
        "answered {late} after the first byte"
    );
    assert!(
        sent < stat.len(),
        "the message was still coming: {sent} bytes"
    );
    // The server closes after it; our close frees the slot.
    assert_eq!(rig.recv(0), Err(RecvError::Finished));
    rig.socket(0).close();
    rig.idle(Duration::from_secs(1));
    assert_eq!(rig.server.active(), 0);
    assert_eq!(rig.server.free_slots(), SLOTS);
    let (pool, stats) = (*rig.server.stats(), rig.shared.stats());
    assert_eq!((pool.closed, pool.idle_timeouts, pool.aborted), (1, 0, 0));
    assert_eq!(stats.request_timeouts, 1);
    assert_eq!(stats.errors.get(ErrorCode::RequestTimeout), 1);
    assert_eq!(stats.stats, 0, "the STAT was never served");
    rig.assert_healthy(1);
}

#[test]
fn a_silent_client_is_reset_by_the_idle_timeout_and_a_stalled_upload_by_the_minimum_rate() {
    // The default 60 s idle timeout, 10 s request deadline and 500 B/s.
    let mut rig = Rig::new(small_store(), SimConfig::new(28));
    let data = pattern(5000, 28);
    // Connection 0 says HELLO and nothing more: no message is under way.
    rig.open(0);
    // Connection 1 stops in the middle of an upload's second DATA frame. The
    // upload has the request deadline from PUT_READY and 4 s more for the 2000
    // bytes it moved: 14 s.
    rig.open(1);
    assert_eq!(
        rig.call(1, &raw::put(b"slow", 5000, crc32(&data), 0)),
        put_ready(0, 0)
    );
    rig.send_frame(1, &raw::data(0, &data[..2000]));
    let second = frame(&raw::data(2000, &data[2000..4000]));
    rig.send_raw(1, &second[..1000]);
    // Past the request deadline, short of the upload's: both still served.
    rig.idle(Duration::from_secs(13));
    assert_eq!(rig.server.active(), 2);
    assert_eq!(rig.shared.stats().slow_transfers, 0);
    // Then the upload is answered ERROR TooSlow and closed; the silent
    // connection stays until the idle timeout.
    rig.idle(Duration::from_secs(2));
    assert_eq!(rig.recv(1), Ok(error(ErrorCode::TooSlow, 500)));
    assert_eq!(rig.recv(1), Err(RecvError::Finished));
    rig.socket(1).close();
    assert_eq!(rig.shared.stats().slow_transfers, 1);
    rig.idle(Duration::from_secs(44));
    assert_eq!(rig.server.active(), 1);
    assert_eq!(rig.server.stats().idle_timeouts, 0);
    // At 60 s of silence the pool resets the other: no ERROR, a RST.
    rig.idle(Duration::from_secs(2));
    assert_eq!(rig.server.stats().idle_timeouts, 1);
    assert_eq!(rig.server.active(), 0);
    assert_eq!(rig.server.free_slots(), SLOTS);
    assert_eq!(rig.recv(0), Err(RecvError::NotConnected));
    let stats = rig.shared.stats();
    assert_eq!(stats.errors.total(), 1);
    assert_eq!(stats.errors.get(ErrorCode::TooSlow), 1);
    assert_eq!(stats.request_timeouts, 0);
    assert_eq!((stats.uploads_abandoned, stats.bytes_in), (1, 2000));
    // The whole DATA frame stays as a partial for a resume.
    rig.open(2);
    assert_eq!(
        rig.call(2, &raw::put(b"slow", 5000, crc32(&data), 1)),
        put_ready(2000, crc32(&data[..2000]))
    );
    rig.send_frame(2, &raw::data(2000, &data[2000..4000]));
    assert_eq!(
        rig.call(2, &raw::data(4000, &data[4000..])),
        put_done(&data)
    );
}

/// One frame of a worked example: who sends it, and its bytes (header included).
struct ExampleFrame {
    from_client: bool,
    bytes: Vec<u8>,
    line: usize,
}

/// Every ```hex block of PROTOCOL.md section 10, as frames.
fn protocol_examples() -> Vec<Vec<ExampleFrame>> {
    let doc = include_str!("../PROTOCOL.md");
    let mut blocks = Vec::new();
    let mut block: Option<Vec<ExampleFrame>> = None;
    for (index, line) in doc.lines().enumerate() {
        match (line.trim_end(), block.as_mut()) {
            ("```hex", None) => block = Some(Vec::new()),
            ("```", Some(_)) => blocks.extend(block.take()),
            (_, Some(frames)) => {
                let code = line.split('#').next().unwrap();
                // `>` or `<` starts a frame (`>!`, `<!`: a deliberately bad one).
                let rest = if code.starts_with('>') || code.starts_with('<') {
                    frames.push(ExampleFrame {
                        from_client: code.starts_with('>'),
                        bytes: Vec::new(),
                        line: index + 1,
                    });
                    code[1..].trim_start_matches('!')
                } else {
                    code
                };
                let frame = frames.last_mut().expect("bytes before a frame");
                frame.bytes.extend(
                    rest.split_whitespace()
                        .map(|hex| u8::from_str_radix(hex, 16).unwrap()),
                );
            }
            _ => {}
        }
    }
    blocks
}

impl<S: Storage + 'static> Rig<S> {
    /// Plays one worked example on connection `i`: sends the client's frames,
    /// and checks that the server's are the document's, byte for byte.
    fn replay(&mut self, i: usize, frames: &[ExampleFrame]) -> usize {
        let mut checked = 0;
        for frame in frames {
            if frame.from_client {
                self.send_raw(i, &frame.bytes);
            } else {
                let body = self.recv_frame(i);
                let mut got = (body.len() as u32).to_be_bytes().to_vec();
                got.extend_from_slice(&body);
                assert_eq!(got, frame.bytes, "PROTOCOL.md:{}", frame.line);
                checked += 1;
            }
        }
        checked
    }
}

/// A store that, once armed, serves one short read of `cap` bytes and then, at
/// once, commits a new version of the file read: a file replaced between two DATA
/// frames of its download, as PROTOCOL.md's example of `ERROR Changed` has it (a
/// server may send smaller chunks than the client accepts).
struct ReplacedAfterRead<S> {
    inner: std::cell::RefCell<S>,
    armed: std::cell::RefCell<Option<(usize, Vec<u8>)>>,
}

impl<S: Storage> Storage for ReplacedAfterRead<S> {
    fn stat(&self, name: &FileName) -> Result<FileStat, smolsock::store::StoreError> {
        self.inner.borrow().stat(name)
    }

    fn read(
        &self,
        name: &FileName,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, smolsock::store::StoreError> {
        let armed = if buf.is_empty() {
            None
        } else {
            self.armed.borrow_mut().take()
        };
        let Some((cap, replacement)) = armed else {
            return self.inner.borrow().read(name, offset, buf);
        };
        let cap = cap.min(buf.len());
        let n = self.inner.borrow().read(name, offset, &mut buf[..cap])?;
        let mut inner = self.inner.borrow_mut();
        let mut upload = inner.begin_upload(name, replacement.len() as u64, false)?;
        inner.append(&mut upload, &replacement)?;
        inner.commit(&upload, crc32(&replacement))?;
        Ok(n)
    }

    fn crc_prefix(&self, name: &FileName, len: u64) -> Result<u32, smolsock::store::StoreError> {
        self.inner.borrow().crc_prefix(name, len)
    }

    fn next_entry(
        &self,
        after: Option<&FileName>,
    ) -> Result<Option<smolsock::store::Entry>, smolsock::store::StoreError> {
        self.inner.borrow().next_entry(after)
    }

    fn version(&self, name: &FileName) -> Result<u64, smolsock::store::StoreError> {
        self.inner.borrow().version(name)
    }

    fn delete(&mut self, name: &FileName) -> Result<(), smolsock::store::StoreError> {
        self.inner.get_mut().delete(name)
    }

    fn begin_upload(
        &mut self,
        name: &FileName,
        size: u64,
        resume: bool,
    ) -> Result<smolsock::store::Upload, smolsock::store::StoreError> {
        self.inner.get_mut().begin_upload(name, size, resume)
    }

    fn append(
        &mut self,
        upload: &mut smolsock::store::Upload,
        data: &[u8],
    ) -> Result<(), smolsock::store::StoreError> {
        self.inner.get_mut().append(upload, data)
    }

    fn commit(
        &mut self,
        upload: &smolsock::store::Upload,
        crc: u32,
    ) -> Result<FileStat, smolsock::store::StoreError> {
        self.inner.get_mut().commit(upload, crc)
    }

    fn discard_upload(&mut self, name: &FileName) -> Result<(), smolsock::store::StoreError> {
        self.inner.get_mut().discard_upload(name)
    }
}

#[test]
fn the_worked_examples_of_protocol_md_replay_byte_for_byte_against_the_server() {
    use smolsock::store::{DirLimits, DirStore};
    let dir = ScratchDir::new("transfer-replay");
    // hello.txt (13 bytes) will be stored when the last example asks for 1 MiB.
    let limits = DirLimits {
        max_total_bytes: 13 + 4096,
        ..DirLimits::DEFAULT
    };
    let store = ReplacedAfterRead {
        inner: DirStore::open(dir.path(), limits).unwrap().into(),
        armed: None.into(),
    };
    let mut rig = Rig::with_options(store, SimConfig::new(20), 65_540, ServerConfig::DEFAULT);
    let blocks = protocol_examples();
    assert_eq!(blocks.len(), 10, "the examples this test knows");
    let [
        upload,
        resumed,
        empty,
        download,
        listing,
        errors,
        mismatch,
        too_much,
        changed,
        full,
    ] = <[_; 10]>::try_from(blocks).ok().unwrap();

    rig.connect(0);
    let mut checked = rig.replay(0, &upload);

    // "The link died after the first DATA of the upload above."
    rig.open(1);
    assert_eq!(
        rig.call(1, &raw::put(b"hello.txt", 13, 0xf424_7453, 0)),
        put_ready(0, 0)
    );
    rig.send_frame(1, &raw::data(0, b"hello, "));
    rig.socket(1).close();
    rig.idle(Duration::from_secs(2));
    assert_eq!(rig.server.stats().closed, 1);

    rig.open(2);
    for example in [
        resumed, empty, download, listing, errors, mismatch, too_much,
    ] {
        checked += rig.replay(2, &example);
    }
    // "The server sent the first 7 bytes, then an upload of hello.txt committed."
    let replacement = b"HELLO, WORLD\n";
    rig.shared
        .with_store(|store| *store.armed.get_mut() = Some((7, replacement.to_vec())))
        .unwrap();
    checked += rig.replay(2, &changed);
    checked += rig.replay(2, &full);
    assert_eq!(checked, 27, "every server frame of the examples");
    assert_eq!(rig.shared.stats().downloads_changed, 1);
    assert_eq!(rig.stored("hello.txt").unwrap(), replacement);
    assert_eq!(std::fs::read(dir.join("hello.txt")).unwrap(), replacement);
}

#[test]
fn a_client_with_the_smallest_frames_talks_to_a_server_with_larger_ones() {
    let mut rig = Rig::with_options(
        small_store(),
        SimConfig::new(24),
        8196,
        ServerConfig::DEFAULT,
    );
    // Announces the minimum, 128, for what it receives; what it sends is bounded
    // by its staging buffer (1,024 bodies) and the server's limit, not by its own
    // receive limit (PROTOCOL.md: the DATA payload is the peer's max_body - 9).
    let mut client = TransferClient::new(vec![0; 132], vec![0; 1028]).unwrap();
    assert_eq!(client.max_body(), 128);
    let data = pattern(10_000, 24);
    rig.connect(0);
    let (stat, seen) = put(&mut rig, &mut client, 0, "tiny", &data, PutOptions::FRESH).unwrap();
    assert_eq!(client.server_max_body(), Some(8192));
    assert_eq!(stat.crc, crc32(&data));
    assert_progress(&seen, 10_000);
    // Every DATA frame up carried the staging buffer's 1,024 - 9 bytes.
    assert_eq!(seen.len(), 1 + 10_000usize.div_ceil(1015) + 1);
    let mut sink = VecSink::default();
    let (_, seen) = get(&mut rig, &mut client, 0, "tiny", &mut sink, false).unwrap();
    assert!(sink.data == data);
    // Every DATA frame down carried 119 bytes at most: the server keeps to the
    // client's 128.
    assert_eq!(seen.len(), 1 + 10_000usize.div_ceil(119) + 1);
    assert!(
        client.framed_stats().read.body_bytes <= 128 * client.framed_stats().read.frames,
        "no frame over the client's limit"
    );
}

static POOL_STORE: Mutex<RamStore<8, { 1 << 20 }>> = Mutex::new(RamStore::new());

#[test]
fn four_transfers_at_once_on_the_pool_over_a_rough_link() {
    let mut rig = Rig::patient(
        leak_locked(&POOL_STORE),
        SimConfig::new(21).with_faults(FaultConfig::ROUGH),
    );
    let files: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| pattern(150_000 + i * 999, 200 + i as u32))
        .collect();
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| new_client()).collect();
    for i in 0..CLIENTS {
        rig.connect(i);
    }
    let handles = rig.clients.clone();
    let mut most_active = 0;

    let mut puts: Vec<_> = clients
        .iter_mut()
        .zip(&files)
        .enumerate()
        .map(|(i, (client, data))| {
            let put = client.put(
                name(&format!("up{i}")),
                &data[..],
                PutOptions::FRESH,
                |_, _| {},
            );
            TcpSession::new(handles[i], put)
        })
        .collect();
    let mut results = vec![None; CLIENTS];
    let Rig { net, server, .. } = &mut rig;
    net.run_services(server, &mut (), LIMIT, |server, _, net| {
        most_active = most_active.max(server.active());
        let now = net.now();
        for (conn, result) in puts.iter_mut().zip(&mut results) {
            if result.is_none()
                && let Poll::Ready(r) = conn.poll_request(&mut net.client.sockets, now).unwrap()
            {
                *result = Some(r);
            }
        }
        results.iter().all(Option::is_some).then_some(())
    })
    .unwrap();
    for (result, data) in results.iter().zip(&files) {
        assert_eq!(result.unwrap().unwrap().crc, crc32(data));
    }
    assert_eq!(most_active, CLIENTS, "all four were served at once");

    let mut sinks: Vec<VecSink> = (0..CLIENTS).map(|_| VecSink::default()).collect();
    let mut gets: Vec<_> = clients
        .iter_mut()
        .zip(&mut sinks)
        .enumerate()
        .map(|(i, (client, sink))| {
            // Each fetches what another one sent.
            let get = client.get(
                name(&format!("up{}", (i + 1) % CLIENTS)),
                sink,
                false,
                |_, _| {},
            );
            TcpSession::new(handles[i], get)
        })
        .collect();
    let mut results = vec![None; CLIENTS];
    let Rig { net, server, .. } = &mut rig;
    net.run_services(server, &mut (), LIMIT, |_, _, net| {
        let now = net.now();
        for (conn, result) in gets.iter_mut().zip(&mut results) {
            if result.is_none()
                && let Poll::Ready(r) = conn.poll_request(&mut net.client.sockets, now).unwrap()
            {
                *result = Some(r);
            }
        }
        results.iter().all(Option::is_some).then_some(())
    })
    .unwrap();
    for (i, sink) in sinks.iter().enumerate() {
        assert!(sink.data == files[(i + 1) % CLIENTS], "download {i}");
    }
    let stats = rig.shared.stats();
    assert_eq!((stats.uploads_done, stats.downloads_done), (4, 4));
    assert!(rig.net.stats().client_to_server.lost > 0);
}

#[test]
fn memory_cost_of_a_connection_is_its_buffers_and_a_small_fixed_part() {
    use core::mem::size_of;
    type Server<B> = TransferServer<'static, RamStore<8, 65_536>, B>;
    type Client<B> = TransferClient<B>;
    let server_slices = size_of::<Server<&'static mut [u8]>>();
    let client_slices = size_of::<Client<&'static mut [u8]>>();
    let server_arrays = size_of::<Server<[u8; 1028]>>();
    let client_arrays = size_of::<Client<[u8; 1028]>>();
    eprintln!(
        "TransferServer: {server_slices} B + buffers (with two [u8; 1028]: {server_arrays} B); \
         TransferClient: {client_slices} B + buffers (with two [u8; 1028]: {client_arrays} B)"
    );
    // The fixed part (framing state and counters, the operation in progress with
    // its file name) stays small next to the two one-frame buffers. On a 64-bit
    // host: 456 and 312 bytes; on thumbv7em, 392 and 256 (tests/memory.rs pins
    // them). A client's upload, while it runs, adds 208 (192) where the caller
    // keeps it.
    let upload =
        size_of::<smolsock::transfer::PutFile<'static, Vec<u8>, &'static [u8], fn(u64, u64)>>();
    assert!(upload <= 224, "{upload}");
    assert!(server_slices <= 464, "{server_slices}");
    assert!(client_slices <= 320, "{client_slices}");
    assert!(server_arrays <= 2 * 1028 + 464, "{server_arrays}");
    assert!(client_arrays <= 2 * 1028 + 320, "{client_arrays}");
}

/// The Linux CLI's protocol code, written from PROTOCOL.md alone.
#[path = "oracle/transfer_client.rs"]
mod cli;

#[path = "common/scratch.rs"]
mod scratch;
use scratch::ScratchDir;

impl<S: Storage + 'static> Rig<S> {
    /// One turn of the network and the server, then the clock moves on.
    fn step(&mut self) {
        self.net.poll();
        let now = self.net.now();
        self.server.poll(&mut self.net.server.sockets, now);
        let hint = self.server.poll_at(&self.net.server.sockets);
        self.net.advance(hint);
    }
}

/// A blocking byte stream over client socket `i` of the rig, as the CLI wants it:
/// each call turns the simulation until it can do something.
struct SimStream<'r, S: Storage + 'static> {
    rig: &'r mut Rig<S>,
    i: usize,
    /// Bytes this stream still moves (either way) before the "cable is pulled".
    budget: usize,
}

impl<'r, S: Storage + 'static> SimStream<'r, S> {
    fn new(rig: &'r mut Rig<S>, i: usize) -> Self {
        rig.connect(i);
        Self {
            rig,
            i,
            budget: usize::MAX,
        }
    }

    fn cut_after(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    fn spend(&mut self, n: usize) -> std::io::Result<usize> {
        if self.budget == 0 {
            self.rig.socket(self.i).abort();
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        let n = n.min(self.budget);
        self.budget -= n;
        Ok(n)
    }

    fn turn(&mut self, since: Instant) -> std::io::Result<()> {
        if self.rig.net.now() - since > PATIENCE {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.rig.step();
        Ok(())
    }
}

impl<S: Storage + 'static> std::io::Read for SimStream<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let since = self.rig.net.now();
        loop {
            let socket = self.rig.socket(self.i);
            if socket.can_recv() {
                let n = self.spend(buf.len())?;
                let socket = self.rig.socket(self.i);
                return Ok(socket.recv_slice(&mut buf[..n]).unwrap());
            }
            if !socket.may_recv() {
                return Ok(0);
            }
            self.turn(since)?;
        }
    }
}

impl<S: Storage + 'static> std::io::Write for SimStream<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let since = self.rig.net.now();
        loop {
            let socket = self.rig.socket(self.i);
            if !socket.may_send() {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            if socket.can_send() {
                let n = self.spend(buf.len())?;
                let socket = self.rig.socket(self.i);
                return Ok(socket.send_slice(&buf[..n]).unwrap());
            }
            self.turn(since)?;
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<S: Storage + 'static> cli::Stream for SimStream<'_, S> {
    fn has_incoming(&mut self) -> std::io::Result<bool> {
        self.rig.step();
        Ok(self.rig.socket(self.i).recv_queue() > 0)
    }
}

#[test]
fn the_cli_protocol_code_puts_lists_stats_gets_and_deletes_over_a_rough_link() {
    let dir = ScratchDir::new("transfer-cli");
    let data = pattern(300_000, 30);
    let source = dir.join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let mut rig = Rig::patient(
        leak_locked(&CLI_STORE),
        SimConfig::new(22).with_faults(FaultConfig::ROUGH),
    );
    let mut conn = cli::Connection::open(SimStream::new(&mut rig, 0)).unwrap();
    let mut seen = Vec::new();
    let report = conn
        .put(
            name("copy.bin"),
            &mut std::fs::File::open(&source).unwrap(),
            false,
            &mut |d, t| seen.push((d, t)),
        )
        .unwrap();
    assert_eq!((report.size, report.crc), (300_000, crc32(&data)));
    assert_progress(&seen, 300_000);
    assert_eq!(conn.list().unwrap(), vec![("copy.bin".to_owned(), 300_000)]);
    assert_eq!(
        conn.stat(name("copy.bin")).unwrap(),
        (300_000, crc32(&data))
    );
    let target = dir.join("back.bin");
    let mut seen = Vec::new();
    let report = conn
        .get(name("copy.bin"), &target, false, &mut |d, t| {
            seen.push((d, t))
        })
        .unwrap();
    assert_eq!(report.crc, crc32(&data));
    assert_progress(&seen, 300_000);
    assert!(std::fs::read(&target).unwrap() == data);
    assert!(!cli::partial_path(&target).exists());
    conn.delete(name("copy.bin")).unwrap();
    assert_eq!(
        conn.stat(name("copy.bin")).unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    drop(conn);
    assert_eq!(rig.stored("copy.bin"), None);
}

static CLI_STORE: Mutex<RamStore<4, { 1 << 20 }>> = Mutex::new(RamStore::new());
static CLI_RESUME_STORE: Mutex<RamStore<4, { 1 << 20 }>> = Mutex::new(RamStore::new());

#[test]
fn the_cli_protocol_code_resumes_a_cut_upload_and_a_cut_download() {
    let dir = ScratchDir::new("transfer-cli-resume");
    let data = pattern(200_000, 31);
    let source = dir.join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let mut rig = Rig::new(leak_locked(&CLI_RESUME_STORE), SimConfig::new(23));

    // The cable is pulled after 80 kB of the upload; the client's RST reaches the
    // server, which keeps the partial.
    let stream = SimStream::new(&mut rig, 0).cut_after(80_000);
    let mut conn = cli::Connection::open(stream).unwrap();
    let mut file = std::fs::File::open(&source).unwrap();
    let cut = conn.put(name("up.bin"), &mut file, true, &mut |_, _| {});
    assert!(matches!(cut, Err(cli::Error::Io(_))), "{cut:?}");
    drop(conn);
    rig.idle(Duration::from_secs(1));
    assert_eq!(rig.visible("up.bin"), (false, false));
    let mut conn = cli::Connection::open(SimStream::new(&mut rig, 1)).unwrap();
    let report = conn
        .put(name("up.bin"), &mut file, true, &mut |_, _| {})
        .unwrap();
    assert!(report.resumed_from > 40_000, "{report:?}");
    assert_eq!(report.crc, crc32(&data));
    drop(conn);
    assert!(rig.stored("up.bin").unwrap() == data);

    // The same for a download: the part file stays, then the rest comes.
    let target = dir.join("down.bin");
    let stream = SimStream::new(&mut rig, 2).cut_after(90_000);
    let mut conn = cli::Connection::open(stream).unwrap();
    let cut = conn.get(name("up.bin"), &target, false, &mut |_, _| {});
    assert!(matches!(cut, Err(cli::Error::Io(_))), "{cut:?}");
    drop(conn);
    assert!(!target.exists(), "nothing under the real name");
    let held = std::fs::metadata(cli::partial_path(&target)).unwrap().len();
    assert!(held > 40_000);
    let mut conn = cli::Connection::open(SimStream::new(&mut rig, 3)).unwrap();
    let report = conn
        .get(name("up.bin"), &target, true, &mut |_, _| {})
        .unwrap();
    assert_eq!(report.resumed_from, held);
    assert!(std::fs::read(&target).unwrap() == data);
}

/// The async adapter (`asynch`, what an embassy-net firmware runs) against the
/// poll-loop server, joined by the simulated link.
#[cfg(feature = "embedded-io-async")]
mod over_async {
    use super::*;
    use core::cell::RefCell;
    use core::future::{Future, poll_fn};
    use core::pin::pin;
    use core::task::{Context, Waker};
    use embedded_io_async::{ErrorKind, ErrorType, Read, Write};
    use smolsock::asynch::{Clock, Connection};

    /// Polls of a future before a test gives up on it: each poll that finds
    /// nothing to do turns the simulation once, so this bounds the virtual
    /// time a request may take too.
    const POLLS: usize = 200_000;

    /// Runs `future` to its end on this thread. Every stream and clock here
    /// turns the simulation when it has to wait, so polling again is progress.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..POLLS {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
        panic!("the future made no end in {POLLS} turns of the simulation");
    }

    /// An `embedded_io_async` stream over client socket `i` of the rig, as
    /// embassy-net's `TcpSocket` is over its socket: a read or write that can
    /// do nothing yet turns the simulation once and is pending.
    struct SimSocket<'r, S: Storage + 'static> {
        rig: &'r RefCell<Rig<S>>,
        i: usize,
        /// Bytes this stream still moves (either way) before the "cable is pulled".
        budget: usize,
    }

    impl<S: Storage + 'static> SimSocket<'_, S> {
        /// Takes up to `n` bytes of the budget; none left: the connection is
        /// reset.
        fn spend(&mut self, n: usize) -> Result<usize, ErrorKind> {
            if self.budget == 0 {
                self.rig.borrow_mut().socket(self.i).abort();
                return Err(ErrorKind::ConnectionReset);
            }
            let n = n.min(self.budget);
            self.budget -= n;
            Ok(n)
        }
    }

    impl<S: Storage + 'static> ErrorType for SimSocket<'_, S> {
        type Error = ErrorKind;
    }

    impl<S: Storage + 'static> Read for SimSocket<'_, S> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            poll_fn(|_| {
                let mut rig = self.rig.borrow_mut();
                let socket = rig.socket(self.i);
                if socket.can_recv() {
                    drop(rig);
                    let n = self.spend(buf.len())?;
                    let mut rig = self.rig.borrow_mut();
                    let read = rig.socket(self.i).recv_slice(&mut buf[..n]);
                    return Poll::Ready(read.map_err(|_| ErrorKind::ConnectionReset));
                }
                if !socket.may_recv() {
                    return Poll::Ready(Ok(0));
                }
                rig.step();
                Poll::Pending
            })
            .await
        }
    }

    impl<S: Storage + 'static> Write for SimSocket<'_, S> {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            poll_fn(|_| {
                let mut rig = self.rig.borrow_mut();
                let socket = rig.socket(self.i);
                if !socket.may_send() {
                    return Poll::Ready(Err(ErrorKind::BrokenPipe));
                }
                if socket.can_send() {
                    drop(rig);
                    let n = self.spend(buf.len())?;
                    let mut rig = self.rig.borrow_mut();
                    let sent = rig.socket(self.i).send_slice(&buf[..n]);
                    return Poll::Ready(sent.map_err(|_| ErrorKind::BrokenPipe));
                }
                rig.step();
                Poll::Pending
            })
            .await
        }

        /// Until every byte written is acknowledged, as embassy-net's flush.
        async fn flush(&mut self) -> Result<(), ErrorKind> {
            poll_fn(|_| {
                let mut rig = self.rig.borrow_mut();
                let socket = rig.socket(self.i);
                if socket.send_queue() == 0 {
                    return Poll::Ready(Ok(()));
                }
                if !socket.may_send() {
                    return Poll::Ready(Err(ErrorKind::BrokenPipe));
                }
                rig.step();
                Poll::Pending
            })
            .await
        }
    }

    /// The simulation's virtual time; waiting turns it.
    struct SimClock<'r, S: Storage + 'static>(&'r RefCell<Rig<S>>);

    impl<S: Storage + 'static> Clock for SimClock<'_, S> {
        fn now(&self) -> smolsock::time::Instant {
            self.0.borrow().net.now().into()
        }

        async fn sleep_until(&self, at: smolsock::time::Instant) {
            poll_fn(|_| {
                if self.now() >= at {
                    return Poll::Ready(());
                }
                self.0.borrow_mut().step();
                Poll::Pending
            })
            .await;
        }
    }

    /// Connects client socket `i` and gives an async stream over it, cut after
    /// `budget` bytes.
    fn connect<S: Storage + 'static>(
        rig: &RefCell<Rig<S>>,
        i: usize,
        budget: usize,
    ) -> SimSocket<'_, S> {
        rig.borrow_mut().connect(i);
        SimSocket { rig, i, budget }
    }

    static ASYNC_STORE: Mutex<RamStore<4, { 1 << 18 }>> = Mutex::new(RamStore::new());

    #[test]
    fn an_async_client_puts_resumes_lists_stats_gets_and_deletes_against_the_poll_loop_server() {
        let data = pattern(150_000, 40);
        let rig = RefCell::new(Rig::patient(
            leak_locked(&ASYNC_STORE),
            SimConfig::new(41).with_faults(FaultConfig::ROUGH),
        ));
        let clock = SimClock(&rig);
        let mut client = new_client();
        let (mut rx, mut tx) = (vec![0u8; 1500], vec![0u8; 1500]);

        // An upload whose connection is reset after 60,000 bytes.
        let mut conn = Connection::new(connect(&rig, 0, 60_000), &mut rx, &mut tx);
        let mut put = client.put(name("fw.bin"), &data[..], PutOptions::FRESH, |_, _| {});
        let cut = block_on(conn.run_request(&mut put, &clock));
        assert!(cut.is_err(), "the cut upload ended {cut:?}");

        // A new connection resumes it, then stat, list, get, delete.
        client.reset();
        let mut conn = Connection::new(connect(&rig, 0, usize::MAX), &mut rx, &mut tx);
        let mut seen = Vec::new();
        let mut put = client.put(name("fw.bin"), &data[..], PutOptions::RESUME, |d, t| {
            seen.push((d, t))
        });
        let stored = block_on(conn.run_request(&mut put, &clock))
            .unwrap()
            .unwrap();
        assert_eq!((stored.size, stored.crc), (150_000, crc32(&data)));
        assert_progress(&seen, 150_000);
        assert!(
            seen[0].0 > 0,
            "the upload resumed from what the server kept: {:?}",
            seen[0]
        );

        let mut stat = client.stat(name("fw.bin"));
        assert_eq!(
            block_on(conn.run_request(&mut stat, &clock)).unwrap(),
            Ok(stored)
        );
        let mut names = Vec::new();
        let mut list = client.list(|entry| names.push((entry.name, entry.size)));
        assert_eq!(
            block_on(conn.run_request(&mut list, &clock)).unwrap(),
            Ok(1)
        );
        assert_eq!(names, [(name("fw.bin"), 150_000)]);

        let mut sink = VecSink {
            data: Vec::new(),
            completed: None,
            restarts: 0,
        };
        let mut get = client.get(name("fw.bin"), &mut sink, false, |_, _| {});
        assert_eq!(
            block_on(conn.run_request(&mut get, &clock)).unwrap(),
            Ok(stored)
        );
        assert!(sink.data == data, "the download differs from the upload");
        assert_eq!(sink.completed, Some(stored));

        let mut delete = client.delete(name("fw.bin"));
        block_on(conn.run_request(&mut delete, &clock))
            .unwrap()
            .unwrap();
        let mut stat = client.stat(name("fw.bin"));
        let gone = block_on(conn.run_request(&mut stat, &clock)).unwrap();
        assert!(matches!(gone, Err(ClientError::Refused { .. })), "{gone:?}");

        let rig = rig.into_inner();
        let stats = rig.shared.stats();
        assert_eq!((stats.uploads_resumed, stats.uploads_done), (1, 1));
        assert_eq!(stats.downloads_done, 1);
        assert!(
            rig.net.stats().client_to_server.lost > 0,
            "the link lost nothing"
        );
    }
}
