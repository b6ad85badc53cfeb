//! The byte stream both firmwares' cost measurements echo: 1 MiB of payload, in
//! frames (4-byte big-endian header, then body) or bare, each payload byte a
//! pattern of its offset, made and checked on the fly with no buffer. Both
//! firmwares include this file, so they measure the same bytes.

/// Payload echoed per path: 1 MiB.
pub const PAYLOAD: u64 = 1024 * 1024;

/// The byte stream of one path, made and checked on the fly: frames (header,
/// then body) or bare bytes, the body bytes a pattern of their offset.
pub struct Stream {
    frame: Option<u32>,
    /// Where in the current frame (header included) the next byte is.
    in_frame: u32,
    /// Payload bytes made so far.
    payload: u64,
}

impl Stream {
    pub const fn new(frame: Option<u32>) -> Self {
        Self {
            frame,
            in_frame: 0,
            payload: 0,
        }
    }

    /// Its length: `PAYLOAD` and the headers of its frames.
    pub const fn len(frame: Option<u32>) -> u64 {
        match frame {
            Some(body) if body > 0 => PAYLOAD + PAYLOAD / body as u64 * 4,
            _ => PAYLOAD,
        }
    }

    pub fn next_byte(&mut self) -> u8 {
        let Some(body) = self.frame else {
            let byte = pattern(self.payload);
            self.payload = self.payload.wrapping_add(1);
            return byte;
        };
        let at = self.in_frame;
        self.in_frame = if at >= body.saturating_add(3) {
            0
        } else {
            at + 1
        };
        match body.to_be_bytes().get(at as usize) {
            Some(&header) => header,
            None => {
                let byte = pattern(self.payload);
                self.payload = self.payload.wrapping_add(1);
                byte
            }
        }
    }
}

fn pattern(offset: u64) -> u8 {
    (offset as u8).wrapping_mul(7) ^ (offset >> 10) as u8
}
