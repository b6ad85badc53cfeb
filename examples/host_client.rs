//! Clients for `tap_server`'s services, on the Linux side of `tap0`: these use the
//! kernel's own sockets (`std::net`), exactly what the primer's Python clients do.
//!
//! ```text
//! cargo run --example host_client -- echo "hello"          # tcp/7: send, recv(1024), close
//! cargo run --example host_client -- udp --count 3 "hi"    # udp/7: sendto, recvfrom
//! cargo run --example host_client -- framed --count 50     # tcp/9000: !I length headers
//! cargo run --example host_client -- http                  # tcp/80: GET /
//! cargo run --example host_client -- echo --ipv6 "over v6" # the same to fdaa::1
//! ```
//!
//! Every step is printed, so the output reads like a trace of the socket calls.
//! Inside a namespace made by `tap-setup.sh up --netns NAME`, run it with
//! `sudo ip netns exec NAME target/debug/examples/host_client ...`.

use std::error::Error;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

/// The stack's addresses on the TAP link (see tap-setup.sh).
const STACK_V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 69, 1));
const STACK_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfdaa, 0, 0, 0, 0, 0, 0, 1));

/// How long any single socket call may wait: a silent server gives a clear error,
/// not a hang.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The primer's buffer size for `recv` and `recvfrom`.
const RECV_SIZE: usize = 1024;

/// Frames printed one by one; beyond this only a summary.
const PRINT_EACH: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Service {
    /// tcp/7 raw echo: connect, send, recv(1024) until all is back, close.
    Echo,
    /// udp/7 UDP echo: sendto, recvfrom; boundaries kept.
    Udp,
    /// tcp/9000 framed echo: each message behind a struct.pack('!I', len) header.
    Framed,
    /// tcp/80 HTTP: GET a page, print status and body.
    Http,
}

impl Service {
    fn default_port(self) -> u16 {
        match self {
            Service::Echo | Service::Udp => 7,
            Service::Framed => 9000,
            Service::Http => 80,
        }
    }
}

#[derive(Parser, Debug)]
#[command(
    about = "Talk to tap_server's services from Linux, over the kernel's sockets",
    after_help = "Start the server first: cargo run --example tap_server"
)]
struct Args {
    /// Which service to talk to.
    #[arg(value_enum)]
    service: Service,
    /// The message to send (default "hello, smolsock"); for http, the path (default /).
    message: Option<String>,
    /// The server's address [default: 192.168.69.1, or fdaa::1 with --ipv6].
    #[arg(long)]
    to: Option<IpAddr>,
    /// Talk to the stack's IPv6 address.
    #[arg(long)]
    ipv6: bool,
    /// The server's port [default: 7 for echo and udp, 9000 framed, 80 http].
    #[arg(long)]
    port: Option<u16>,
    /// How many messages to send (all back to back for framed).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Send a generated message of this many bytes instead of MESSAGE.
    #[arg(long)]
    size: Option<usize>,
}

impl Args {
    fn server(&self) -> SocketAddr {
        let ip = self
            .to
            .unwrap_or(if self.ipv6 { STACK_V6 } else { STACK_V4 });
        SocketAddr::new(ip, self.port.unwrap_or(self.service.default_port()))
    }

    /// Message number `i`: MESSAGE, or `--size` bytes of readable text.
    fn message(&self, i: usize) -> Vec<u8> {
        match self.size {
            Some(size) => {
                let line = format!("message {i} of {}: ", self.count);
                line.bytes()
                    .chain((0..).map(|n| b'a' + (n % 26) as u8))
                    .take(size)
                    .collect()
            }
            None => {
                let text = self.message.as_deref().unwrap_or("hello, smolsock");
                if self.count > 1 {
                    format!("{text} #{i}").into_bytes()
                } else {
                    text.as_bytes().to_vec()
                }
            }
        }
    }
}

fn main() {
    let args = Args::parse();
    let result = match args.service {
        Service::Echo => echo(&args),
        Service::Udp => udp(&args),
        Service::Framed => framed(&args),
        Service::Http => http(&args),
    };
    if let Err(e) = result {
        eprintln!("host_client: {e}");
        std::process::exit(1);
    }
}

/// `repr` of a message, cut for printing.
fn show(bytes: &[u8]) -> String {
    const MAX: usize = 60;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text:?}... ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}

fn connect(server: SocketAddr) -> Result<TcpStream, Box<dyn Error>> {
    println!("connect({server})");
    let stream = TcpStream::connect_timeout(&server, TIMEOUT).map_err(|e| {
        let hint = match e.kind() {
            ErrorKind::ConnectionRefused => " (is tap_server running? is the service on?)",
            // A SYN to a pool whose slots are all busy is held in tap_server's
            // listen backlog, not refused: the connect waits for a slot.
            ErrorKind::TimedOut => {
                " (is tap0 up? see tap-setup.sh status; or are all the service's slots busy?)"
            }
            _ => "",
        };
        format!("connect to {server}: {e}{hint}")
    })?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    println!("  connected from {}", stream.local_addr()?);
    Ok(stream)
}

/// The primer's TCP client: connect, send, recv(1024) (again, until every byte of a
/// long message is back: TCP is a byte stream, one send may come back in pieces),
/// close.
fn echo(args: &Args) -> Result<(), Box<dyn Error>> {
    let mut stream = connect(args.server())?;
    for i in 0..args.count {
        let message = args.message(i);
        stream.write_all(&message)?;
        println!("sendall({}) -> {} bytes", show(&message), message.len());
        let mut back = Vec::with_capacity(message.len());
        let mut buf = [0u8; RECV_SIZE];
        while back.len() < message.len() {
            let n = match stream.read(&mut buf) {
                // A signal cut the wait short (read, unlike read_exact, does not retry).
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                result => result?,
            };
            if n == 0 {
                return Err("the server closed the connection before echoing everything".into());
            }
            println!("recv({RECV_SIZE}) -> {n} bytes: {}", show(&buf[..n]));
            back.extend_from_slice(&buf[..n]);
        }
        if back != message {
            return Err("the echo differs from what was sent".into());
        }
        println!("  echo {} complete", i + 1);
    }
    stream.shutdown(Shutdown::Write)?;
    println!("close()");
    Ok(())
}

/// How long the UDP client waits for each datagram's echo.
const UDP_WAIT: Duration = Duration::from_secs(2);

/// The primer's UDP client: sendto, then recvfrom; each datagram comes back whole.
fn udp(args: &Args) -> Result<(), Box<dyn Error>> {
    let server = args.server();
    let any: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = UdpSocket::bind((any, 0))?;
    println!("bind({}) -> {}", any, socket.local_addr()?);
    let messages: Vec<Vec<u8>> = (0..args.count).map(|i| args.message(i)).collect();
    let echoes = udp_echoes(&socket, server, &messages, |_| UDP_WAIT)?;
    println!(
        "{} sent, {} answered ({} late), {} lost, {} duplicated",
        messages.len(),
        echoes.answered,
        echoes.late,
        echoes.lost(),
        echoes.duplicates
    );
    if echoes.answered == 0 && !messages.is_empty() {
        return Err("no datagram came back (is tap_server running?)".into());
    }
    Ok(())
}

/// What came back of the datagrams [`udp_echoes`] sent.
#[derive(Debug, PartialEq, Eq)]
struct Echoes {
    sent: usize,
    /// Datagrams whose echo came back, in time or late.
    answered: usize,
    /// Of those, the echoes that came after their wait was over, while the
    /// client waited for a later one.
    late: usize,
    /// Second copies of an echo already counted (UDP may duplicate).
    duplicates: usize,
}

impl Echoes {
    fn lost(&self) -> usize {
        self.sent - self.answered
    }
}

/// Sends each of `messages` to `server` and waits up to `wait(i)` for the
/// echo of message `i`.
///
/// UDP does not retransmit, and an echo may come late, after its own wait
/// was over: it is then taken for what it is, the echo of an earlier
/// datagram, not for the answer to the one sent since; a second copy of an
/// echo is counted apart. A datagram from any other address is left aside.
/// Only bytes that echo nothing sent are an error.
fn udp_echoes(
    socket: &UdpSocket,
    server: SocketAddr,
    messages: &[Vec<u8>],
    wait: impl Fn(usize) -> Duration,
) -> Result<Echoes, Box<dyn Error>> {
    let mut back = vec![false; messages.len()];
    let (mut late, mut duplicates) = (0, 0);
    // Bigger than recvfrom(1024), so a long datagram shows whole, not cut.
    let mut buf = vec![0u8; 65_536];
    for (i, message) in messages.iter().enumerate() {
        let n = socket.send_to(message, server)?;
        println!("sendto({}, {server}) -> {n} bytes", show(message));
        let wait = wait(i);
        let deadline = Instant::now() + wait;
        while !back[i] {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                println!(
                    "  no answer within {} ms: UDP does not retransmit, this one is lost",
                    wait.as_millis()
                );
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let (n, from) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let datagram = &buf[..n];
            println!("recvfrom() -> {n} bytes from {from}: {}", show(datagram));
            if from != server {
                println!("  not from {server}: left aside");
                continue;
            }
            // This datagram's echo, else the latest earlier one still missing,
            // else a copy of one already back.
            let missing = (0..=i).rev().find(|&j| !back[j] && messages[j] == datagram);
            match missing {
                Some(j) => {
                    back[j] = true;
                    if j < i {
                        late += 1;
                        println!("  the late echo of datagram {}", j + 1);
                    }
                }
                None if messages[..=i].iter().any(|m| m == datagram) => {
                    duplicates += 1;
                    println!("  a second copy of an echo already back");
                }
                None => return Err("the datagram that came back differs".into()),
            }
        }
    }
    Ok(Echoes {
        sent: messages.len(),
        answered: back.iter().filter(|&&b| b).count(),
        late,
        duplicates,
    })
}

/// Length framing: every message goes out behind a 4-byte big-endian length
/// (Python's `struct.pack('!I', len(body))`), all back to back, so TCP is free to
/// glue them together; the reader takes them apart again by reading exactly 4
/// bytes, then exactly that many. A writer thread sends while the main thread
/// reads, so a long run never fills both directions' buffers and stalls.
fn framed(args: &Args) -> Result<(), Box<dyn Error>> {
    let stream = connect(args.server())?;
    let messages: Vec<Vec<u8>> = (0..args.count).map(|i| args.message(i)).collect();
    let mut writer = stream.try_clone()?;
    let to_send = messages.clone();
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        for (i, body) in to_send.iter().enumerate() {
            // One write per frame, as Python's sendall(struct.pack('!I', n) + body):
            // how the frames are cut into segments is then TCP's doing alone.
            // Printed before the write, so a frame's echo can never be shown first.
            let header = (body.len() as u32).to_be_bytes();
            if i < PRINT_EACH {
                println!("sendall({} + {})", show_header(header), show(body));
            }
            writer.write_all(&[&header[..], body].concat())?;
        }
        if to_send.len() > PRINT_EACH {
            println!("... {} frames sent in all", to_send.len());
        }
        Ok(())
    });

    let started = Instant::now();
    let mut reader = stream;
    let mut bytes = 0usize;
    for (i, sent) in messages.iter().enumerate() {
        let mut header = [0u8; 4];
        reader.read_exact(&mut header)?;
        let len = u32::from_be_bytes(header) as usize;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body)?;
        if body != *sent {
            return Err(format!("frame {i} came back different: {}", show(&body)).into());
        }
        bytes += 4 + len;
        if i < PRINT_EACH {
            println!(
                "recv frame {i}: {}, body {} (whole)",
                show_header(header),
                show(&body)
            );
        }
    }
    sender.join().map_err(|_| "the writer thread panicked")??;
    let elapsed = started.elapsed();
    let frames = match messages.len() {
        1 => "the frame came back whole".to_owned(),
        n => format!("all {n} frames came back whole and in order"),
    };
    println!("{frames}: {bytes} bytes in {:.3} s", elapsed.as_secs_f64());
    reader.shutdown(Shutdown::Write)?;
    println!("close()");
    Ok(())
}

/// A 4-byte big-endian length header as it travels, and what it says:
/// `header 00 00 00 12 (= 18 bytes)`.
fn show_header(header: [u8; 4]) -> String {
    let [a, b, c, d] = header;
    let len = u32::from_be_bytes(header);
    let unit = if len == 1 { "byte" } else { "bytes" };
    format!("header {a:02x} {b:02x} {c:02x} {d:02x} (= {len} {unit})")
}

/// A browser in a few lines: the request head, then read until the server closes.
fn http(args: &Args) -> Result<(), Box<dyn Error>> {
    let server = args.server();
    let path = args.message.as_deref().unwrap_or("/");
    let host = match server.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let mut stream = connect(server)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: host_client\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    println!("sent:\n{}", request.trim_end());
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    // The head is text; the body may be anything, and is measured as bytes.
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no end of head (blank line)")?;
    let (head, body) = (
        String::from_utf8_lossy(&response[..end]),
        &response[end + 4..],
    );
    println!(
        "\nreceived {} bytes:\n{head}\n\n{}",
        response.len(),
        String::from_utf8_lossy(body)
    );
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    match length {
        Some(n) if n == body.len() => println!("(Content-Length {n} matches the body)"),
        Some(n) => return Err(format!("Content-Length {n}, body {}", body.len()).into()),
        None => println!("(no Content-Length)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `serve` on a server socket on loopback, in a thread, against
    /// `udp_echoes` sending `messages` from a client socket with `wait`; what
    /// `udp_echoes` gave; `serve` gets the server's socket.
    fn exchange(
        messages: &[&[u8]],
        wait: impl Fn(usize) -> Duration,
        serve: impl FnOnce(&UdpSocket) + Send + 'static,
    ) -> Result<Echoes, String> {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        server.set_read_timeout(Some(TIMEOUT)).unwrap();
        let handle = std::thread::spawn(move || serve(&server));
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let messages: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
        let echoes = udp_echoes(&socket, addr, &messages, wait).map_err(|e| e.to_string());
        handle.join().unwrap();
        echoes
    }

    /// The next datagram to `server`: its bytes and its sender.
    fn next(server: &UdpSocket) -> (Vec<u8>, SocketAddr) {
        let mut buf = [0u8; 1500];
        let (n, from) = server.recv_from(&mut buf).unwrap();
        (buf[..n].to_vec(), from)
    }

    #[test]
    fn a_late_echo_is_taken_for_its_own_datagram() {
        // The first echo is late whatever its wait: the server holds it back
        // until the second datagram has come, and a stranger's datagram comes
        // before both. The second's wait is long, so that it comes in time
        // however slow the machine.
        let wait = |i| {
            if i == 0 {
                Duration::from_millis(50)
            } else {
                TIMEOUT
            }
        };
        let echoes = exchange(&[b"one", b"two"], wait, |server| {
            let (first, client) = next(server);
            let (second, _) = next(server);
            let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
            stranger.send_to(&second, client).unwrap();
            server.send_to(&first, client).unwrap();
            server.send_to(&second, client).unwrap();
        });
        let expected = Echoes {
            sent: 2,
            answered: 2,
            late: 1,
            duplicates: 0,
        };
        assert_eq!(echoes, Ok(expected));
    }

    #[test]
    fn a_second_copy_of_an_echo_is_counted_apart() {
        let echoes = exchange(
            &[b"one", b"two"],
            |_| TIMEOUT,
            |server| {
                let (first, client) = next(server);
                server.send_to(&first, client).unwrap();
                server.send_to(&first, client).unwrap();
                let (second, client) = next(server);
                server.send_to(&second, client).unwrap();
            },
        );
        let expected = Echoes {
            sent: 2,
            answered: 2,
            late: 0,
            duplicates: 1,
        };
        assert_eq!(echoes, Ok(expected));
    }

    #[test]
    fn bytes_that_echo_nothing_sent_are_an_error() {
        let echoes = exchange(
            &[b"one"],
            |_| TIMEOUT,
            |server| {
                let (_, client) = next(server);
                server.send_to(b"other", client).unwrap();
            },
        );
        assert!(echoes.is_err(), "{echoes:?}");
    }
}
