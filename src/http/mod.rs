//! HTTP/1.1 as a sans-IO session: the primer's "answer a browser", with no socket.
//!
//! The primer sends `HTTP/1.1 200 OK\r\n\r\n` then the body. A real client also
//! wants a `Content-Length` (or a close) to know where the body ends, and a server
//! must first read the whole request head, which may come in any number of
//! segments, slowly or never. [`HttpResponder`] is a [`Session`](crate::session::Session):
//! it gathers the head in a fixed buffer, parses it with
//! [`wire::http`](crate::wire::http), makes the answer once (head and body, from a
//! [`Site`]'s routes) and hands it out in whatever pieces the adapter has room for,
//! then asks for the connection to close: one request per connection
//! (`Connection: close`), which keeps the state machine small.
//!
//! It needs no smoltcp: the same responder runs in the smoltcp pool, over an
//! embassy-net socket or over `std::net`.
//!
//! - [`HttpResponder`], its [`HttpConfig`] (deadlines) and [`HttpStats`] (counters).
//! - [`Site`]: the routes; [`Asset`]: a page sent from bytes that already exist;
//!   [`StatusSite`]: a home page and `/stats` with live counters.

mod responder;
mod site;

pub use responder::{HEAD_CAPACITY, HttpConfig, HttpResponder, HttpStats, MAX_HEADERS};
pub use site::{Asset, Bars, LiveSite, Site, StatusSite};
