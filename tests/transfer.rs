//! The file transfer service end to end over the in-process link: the server on a
//! pool of four slots over a `RamStore`, driven by the `no_std` client and by raw
//! frames written from PROTOCOL.md.

use std::sync::Mutex;
use std::task::Poll;

use smolsock::net::{ClientState, ServerConfig, Service, FramedStream, PortAllocator, RecvError, TcpClient, TcpServer};
use smolsock::runner::sim::{Direction, FaultConfig, SERVER_V4, SimConfig, SimNet};
use smolsock::service::transfer::{
    ClientError, FileSink, LocalError, PutOptions, SharedStore, TransferClient, TransferServer,
    UploadLease,
};
use smolsock::store::{FileName, FileStat, RamStore, Storage};
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

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; SOCKET_BUF]),
        tcp::SocketBuffer::new(vec![0; SOCKET_BUF]),
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

/// The server's pool, its shared store, and four client sockets on the sim link.
struct Rig<S: Storage + 'static> {
    net: SimNet<'static>,
    server: TcpServer<Slot<S>, SLOTS>,
    shared: &'static SharedStore<S>,
    clients: Vec<SocketHandle>,
    /// Raw framing of each client socket, for tests that speak bytes.
    streams: Vec<FramedStream<Vec<u8>>>,
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
            idle_timeout: Some(PATIENCE),
            ..ServerConfig::DEFAULT
        };
        Self::with_options(store, config, FRAME, server)
    }

    fn with_options(store: S, config: SimConfig, frame: usize, server: ServerConfig) -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let shared: &'static SharedStore<S> =
            Box::leak(Box::new(SharedStore::new(store, [UploadLease::EMPTY; SLOTS])));
        let mut net: SimNet<'static> = SimNet::new(
            config,
            SocketSet::new(Vec::new()),
            SocketSet::new(Vec::new()),
        );
        let handles: [SocketHandle; SLOTS] =
            std::array::from_fn(|_| net.server.sockets.add(tcp_socket()));
        let slots: [Slot<S>; SLOTS] = std::array::from_fn(|_| {
            TransferServer::new(shared, vec![0; frame], vec![0; frame]).unwrap()
        });
        let mut server = TcpServer::new(PORT, handles, slots).with_config(server);
        // Listening before the first SYN arrives.
        let now = net.now();
        server.poll(&mut net.server.sockets, now);
        let clients = (0..CLIENTS)
            .map(|_| net.client.sockets.add(tcp_socket()))
            .collect();
        let format = HeaderFormat::NETWORK.with_max_len(1 << 17).unwrap();
        Self {
            net,
            server,
            shared,
            clients,
            streams: (0..CLIENTS)
                .map(|_| FramedStream::new(vec![0; (1 << 17) + 4], format).unwrap())
                .collect(),
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
        self.net.client.sockets.get_mut::<tcp::Socket>(self.clients[i])
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

    /// Runs a client operation on socket `i` until it is ready.
    fn drive<T>(
        &mut self,
        i: usize,
        mut poll: impl FnMut(&mut tcp::Socket<'static>, Instant) -> Poll<T>,
    ) -> T {
        let handle = self.clients[i];
        self.run(|net| {
            let now = net.now();
            match poll(net.client.sockets.get_mut(handle), now) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => None,
            }
        })
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
        loop {
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
        .with_timeout(Some(PATIENCE))
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
    let mut op = client.put(name(file), data, options, |done, total| {
        seen.push((done, total))
    });
    let result = rig.drive(i, |socket, now| op.poll(socket, now));
    drop(op);
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
    let mut op = client.get(name(file), &mut *sink, resume, |done, total| {
        seen.push((done, total))
    });
    let result = rig.drive(i, |socket, now| op.poll(socket, now));
    drop(op);
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
    assert_eq!(client.stream_stats().write.frames, 2 + data_frames);
    assert_eq!(rig.stored(file).as_deref(), Some(data), "stored exactly");

    let mut op = client.stat(name(file));
    let stat = rig.drive(0, |socket, now| op.poll(socket, now)).unwrap();
    assert_eq!(stat.size, data.len() as u64);

    let mut sink = VecSink::default();
    let (got, seen) = get(rig, &mut client, 0, file, &mut sink, false).unwrap();
    assert_eq!(got, stat);
    assert_progress(&seen, data.len() as u64);
    assert!(sink.data == data, "downloaded exactly");
    assert_eq!(sink.completed, Some(stat));
    // HELLO_OK, PUT_READY, PUT_DONE, STAT_OK, GET_READY, and the DATA frames.
    assert_eq!(client.stream_stats().read.frames, 5 + data_frames);
}

fn small_store() -> RamStore<8, 65_536> {
    RamStore::new()
}

#[test]
fn files_of_edge_sizes_go_up_and_down_whole_over_a_clean_link() {
    let mut rig = Rig::new(small_store(), SimConfig::new(1));
    for (i, len) in [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17].into_iter().enumerate() {
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
    for (i, len) in [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17].into_iter().enumerate() {
        round_trip(&mut rig, &format!("f{len}"), &pattern(len, 10 + i as u32));
    }
    assert!(rig.net.stats().client_to_server.lost > 0);
    assert!(rig.net.stats().server_to_client.lost > 0);
}

static BIG_CLEAN: Mutex<RamStore<4, { 6 << 20 }>> = Mutex::new(RamStore::new());
static BIG_ROUGH: Mutex<RamStore<4, { 6 << 20 }>> = Mutex::new(RamStore::new());

fn big_store(store: &'static Mutex<RamStore<4, { 6 << 20 }>>) -> &'static mut RamStore<4, { 6 << 20 }> {
    let guard = Box::leak(Box::new(store.lock().unwrap()));
    &mut **guard
}

#[test]
fn five_mib_go_up_and_down_whole_over_a_clean_link() {
    let mut rig = Rig::new(big_store(&BIG_CLEAN), SimConfig::new(3));
    round_trip(&mut rig, "big.bin", &pattern(5 << 20, 3));
}

#[test]
fn five_mib_go_up_and_down_whole_over_a_rough_link() {
    let mut rig = Rig::patient(
        big_store(&BIG_ROUGH),
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
    let mut op = client.put(name("log.bin"), &data[..], PutOptions::RESUME, |d, _| {
        done.set(d)
    });
    rig.drive(0, |socket, now| match op.poll(socket, now) {
        Poll::Ready(result) => panic!("finished early: {result:?}"),
        Poll::Pending if done.get() >= 16 * 1024 => Poll::Ready(()),
        Poll::Pending => Poll::Pending,
    });
    // The link dies; the client keeps trying for 30 s, then loses power.
    rig.set_link(DEAD);
    let cut_at = rig.net.now();
    rig.drive(0, |socket, now| match op.poll(socket, now) {
        Poll::Ready(result) => panic!("finished on a dead link: {result:?}"),
        Poll::Pending if now - cut_at >= Duration::from_secs(30) => Poll::Ready(()),
        Poll::Pending => Poll::Pending,
    });
    drop(op);
    rig.socket(0).abort();
    assert_eq!(rig.visible("log.bin"), (false, false), "nothing visible");
    assert_eq!(rig.shared.with_store(|s| s.entries()), Some(1), "the partial stays");
    rig.set_link(FaultConfig::CLEAN);

    // The server's slot still holds the dead connection: the name is busy.
    rig.connect(0);
    client.reset();
    let busy = put(&mut rig, &mut client, 0, "log.bin", &data, PutOptions::RESUME);
    assert_eq!(busy.unwrap_err().code(), Some(ErrorCode::Busy));
    let mut listing = Vec::new();
    let mut op = client.list(|entry| listing.push(entry));
    assert_eq!(rig.drive(0, |socket, now| op.poll(socket, now)), Ok(0));
    drop(op);
    assert!(listing.is_empty());
    let mut op = client.stat(name("log.bin"));
    let missing = rig.drive(0, |socket, now| op.poll(socket, now));
    assert_eq!(missing.unwrap_err().code(), Some(ErrorCode::NotFound));

    // Once the server gave up on the silent peer (60 s), the upload resumes. (The
    // second connection, silent meanwhile, timed out too.)
    rig.idle(Duration::from_secs(61));
    assert_eq!(rig.server.stats().idle_timeouts, 2);
    rig.connect(0);
    client.reset();
    let (stat, seen) = put(&mut rig, &mut client, 0, "log.bin", &data, PutOptions::RESUME).unwrap();
    assert_eq!(stat.crc, crc32(&data));
    assert!(seen[0].0 >= 8 * 1024, "resumed, not restarted: {:?}", seen[0]);
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
    let mut op = client.get(name("config.bin"), &mut sink, false, |_, _| {});
    rig.drive(0, |socket, now| match op.poll(socket, now) {
        Poll::Ready(result) => panic!("finished early: {result:?}"),
        Poll::Pending if op.sink().data.len() >= 16 * 1024 => Poll::Ready(()),
        Poll::Pending => Poll::Pending,
    });
    rig.set_link(DEAD);
    rig.idle(Duration::from_secs(30));
    drop(op);
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
    assert_eq!(sink.restarts, 1, "only the first, fresh download restarted the sink");
}

#[test]
fn a_client_whose_dropped_operation_left_the_connection_half_way_must_reconnect() {
    let mut rig = Rig::new(small_store(), SimConfig::new(7));
    rig.put_into_store("a", &pattern(20_000, 7));
    let mut client = new_client();
    let mut sink = VecSink::default();
    rig.connect(0);
    let mut op = client.get(name("a"), &mut sink, false, |_, _| {});
    rig.drive(0, |socket, now| match op.poll(socket, now) {
        Poll::Pending if !op.sink().data.is_empty() => Poll::Ready(()),
        Poll::Pending => Poll::Pending,
        Poll::Ready(result) => panic!("{result:?}"),
    });
    drop(op);
    let mut op = client.stat(name("a"));
    assert_eq!(
        rig.drive(0, |socket, now| op.poll(socket, now)),
        Err(ClientError::Unusable)
    );
    drop(op);
    rig.connect(0);
    client.reset();
    let mut op = client.stat(name("a"));
    assert_eq!(rig.drive(0, |socket, now| op.poll(socket, now)).unwrap().size, 20_000);
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

#[test]
fn a_file_replaced_during_its_download_fails_the_checksum_and_is_not_kept() {
    let mut rig = Rig::new(small_store(), SimConfig::new(10));
    rig.put_into_store("fw.bin", &pattern(30_000, 100));
    let mut client = new_client();
    let mut sink = VecSink::default();
    rig.connect(0);
    let mut op = client.get(name("fw.bin"), &mut sink, false, |_, _| {});
    let mut replaced = false;
    let shared = rig.shared;
    let result = rig.drive(0, |socket, now| {
        if !replaced && !op.sink().data.is_empty() {
            replaced = true;
            shared
                .with_store(|store| {
                    let new = pattern(30_000, 101);
                    let mut upload = store.begin_upload(&name("fw.bin"), 30_000, false)?;
                    store.append(&mut upload, &new)?;
                    store.commit(&upload, crc32(&new))
                })
                .unwrap()
                .unwrap();
        }
        op.poll(socket, now)
    });
    drop(op);
    assert!(matches!(
        result,
        Err(ClientError::ChecksumMismatch { expected, .. }) if expected == crc32(&pattern(30_000, 100))
    ));
    assert!(sink.data.is_empty() && sink.completed.is_none());
    // The whole answer was read: the connection goes on.
    let mut op = client.stat(name("fw.bin"));
    let stat = rig.drive(0, |socket, now| op.poll(socket, now)).unwrap();
    assert_eq!(stat.crc, crc32(&pattern(30_000, 101)));
}
