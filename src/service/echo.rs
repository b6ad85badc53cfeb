//! Raw TCP echo: the primer's server loop, `data = conn.recv(1024)` then
//! `conn.sendall(data)`, as a [`Handler`].
//!
//! It reads no more than the send buffer can take right now, so every byte read
//! is queued at once and nothing waits in the handler: when the peer stops
//! reading, our send buffer fills, we stop reading, our receive window closes, and
//! the peer's `send` blocks. That chain is TCP's back-pressure, end to end.

use crate::net::{Connection, Flow, Handler};

/// The primer's `recv(1024)`.
pub const CHUNK: usize = 1024;

/// Echoes every byte back, `CHUNK` bytes at a time.
#[derive(Clone, Debug)]
pub struct Echo {
    buf: [u8; CHUNK],
    /// Bytes echoed, over every connection served.
    pub bytes: u64,
}

impl Echo {
    /// A new echo handler.
    pub const fn new() -> Self {
        Self {
            buf: [0; CHUNK],
            bytes: 0,
        }
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Handler for Echo {
    fn on_data(&mut self, conn: &mut Connection<'_, '_>) -> Flow {
        loop {
            let room = conn.send_space().min(CHUNK);
            let Some(buf) = self.buf.get_mut(..room) else {
                return Flow::Continue;
            };
            let n = conn.recv(buf);
            if n == 0 {
                return Flow::Continue;
            }
            // Cannot come up short: n <= room, the free send space.
            let sent = conn.send(buf.get(..n).unwrap_or(&[]));
            self.bytes = self.bytes.saturating_add(sent as u64);
        }
    }
}
