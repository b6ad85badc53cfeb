//! Framed echo: every whole frame goes back as the same frame.
//!
//! The frame is answered straight from the receive storage, with no copy: it stays
//! in place while the reply trickles into the send buffer (over several polls if
//! the frame is larger than the buffer), and only then is the next frame read.

use crate::net::{End, Flow, FrameHandler, FrameOut};
use crate::wire::frame::ReadError;

/// Sends each frame back.
#[derive(Clone, Copy, Debug, Default)]
pub struct FramedEcho {
    /// Frames echoed, over every connection served.
    pub frames: u64,
    /// Streams that broke (oversize or truncated frames).
    pub errors: u64,
}

impl FramedEcho {
    /// A new framed echo handler.
    pub const fn new() -> Self {
        Self {
            frames: 0,
            errors: 0,
        }
    }
}

impl FrameHandler for FramedEcho {
    fn on_frame(&mut self, frame: &[u8], out: &mut FrameOut<'_, '_>) -> Flow {
        let flow = Flow::from_send(out.send(frame));
        if flow == Flow::Continue {
            self.frames = self.frames.saturating_add(1);
        }
        flow
    }

    fn on_error(&mut self, error: ReadError) {
        log::info!("framed echo: stream error: {error}");
        self.errors = self.errors.saturating_add(1);
    }

    fn finish(&mut self, _end: End) {}
}
