//! Ready-made services, each a poll-driven state machine on the [`net`](crate::net)
//! layer: what a firmware image would run, and what the examples and tests drive.
//!
//! | service | port (by convention) | primer topic |
//! |---|---|---|
//! | [`echo::Echo`] in a [`TcpServer`](crate::net::TcpServer) | tcp/7 | `recv(1024)` + `sendall` |
//! | [`udp_echo::UdpEcho`] in a [`UdpService`](crate::net::UdpService) | udp/7 | `recvfrom` + `sendto` |
//! | [`framed_echo::FramedEcho`] in [`Framed`](crate::net::Framed) | tcp/9000 | length framing |
//! | [`http::HttpResponder`] | tcp/80 | answering a browser |
//! | [`TransferServer`](crate::transfer::TransferServer) over a [`Storage`](crate::store::Storage) | tcp/2121 | FTP with a progress bar |

pub mod echo;
pub mod framed_echo;
pub mod http;
pub mod udp_echo;
