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

    /// Writes the stream's next `space.len()` bytes into `space`.
    pub fn fill(&mut self, space: &mut [u8]) {
        let mut rest = space;
        while !rest.is_empty() {
            let run = self.next_run(rest.len());
            let (now, later) = rest.split_at_mut(run.len.min(rest.len()));
            match run.header() {
                Some(header) => now.copy_from_slice(header),
                None => {
                    for (byte, at) in now.iter_mut().zip(run.offset..) {
                        *byte = pattern(at);
                    }
                }
            }
            rest = later;
        }
    }

    /// Whether `data` is the stream's next `data.len()` bytes.
    pub fn check(&mut self, data: &[u8]) -> bool {
        let mut rest = data;
        let mut same = true;
        while !rest.is_empty() {
            let run = self.next_run(rest.len());
            let (now, later) = rest.split_at(run.len.min(rest.len()));
            same &= match run.header() {
                Some(header) => now == header,
                None => now
                    .iter()
                    .zip(run.offset..)
                    .fold(true, |same, (&byte, at)| same & (byte == pattern(at))),
            };
            rest = later;
        }
        same
    }

    /// The next run of at most `max` (at least 1) bytes that are all header or
    /// all body, and moves past it. `fill` and `check` make or check a run with
    /// no test per byte of where in its frame it is, so the client of a framed
    /// path costs what the client of a bare one does.
    fn next_run(&mut self, max: usize) -> Run {
        let body = match self.frame {
            Some(body) if body > 0 => body,
            _ => {
                let offset = self.payload;
                self.payload = self.payload.wrapping_add(max as u64);
                return Run::body(offset, max);
            }
        };
        let at = self.in_frame as usize;
        if at < 4 {
            let len = (4 - at).min(max);
            self.in_frame = (at + len) as u32;
            return Run {
                header: Some((body.to_be_bytes(), at)),
                offset: 0,
                len,
            };
        }
        let left = body as usize + 4 - at;
        let len = left.min(max);
        let offset = self.payload;
        self.payload = self.payload.wrapping_add(len as u64);
        self.in_frame = if len == left { 0 } else { (at + len) as u32 };
        Run::body(offset, len)
    }
}

/// A run of the stream: header bytes, or body bytes from a payload offset.
struct Run {
    /// The frame's header and where in it the run starts, for a header run.
    header: Option<([u8; 4], usize)>,
    offset: u64,
    len: usize,
}

impl Run {
    fn body(offset: u64, len: usize) -> Self {
        Self {
            header: None,
            offset,
            len,
        }
    }

    fn header(&self) -> Option<&[u8]> {
        let (bytes, from) = self.header.as_ref()?;
        bytes.get(*from..from.saturating_add(self.len))
    }
}

fn pattern(offset: u64) -> u8 {
    (offset as u8).wrapping_mul(7) ^ (offset >> 10) as u8
}
