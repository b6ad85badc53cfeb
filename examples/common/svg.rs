//! The picture a networking textbook draws of one connection, from a
//! `smolsock::trace`: plain SVG, written by hand, one file per connection.
//!
//! From top to bottom, on one time axis:
//!
//! 1. the time-sequence graph of the data's direction: each data segment a
//!    vertical bar from its first to its last sequence number (red when it
//!    resends bytes already sent), the receiver's acknowledgements as a step line,
//!    and the right edge of the window it advertised (ack + window) above them;
//! 2. buffer occupancy: the sender's send buffer, the receiver's receive buffer
//!    (from the samples taken at each poll) and the bytes in flight (read off the
//!    segments: highest sequence sent minus highest acknowledged);
//! 3. lanes: each application send, each read and each frame delivered, with a
//!    thin line from every send to each read that carried some of its bytes. A
//!    read that carried bytes of more than one message (coalesced: "three sends
//!    became one read") is orange; a message whose bytes took more than one read
//!    (split: "one send spilled into the next read") has a red outline.
//!
//! Every drawn mark has a `class` (`segment`, `ack`, `send`, `read`, `frame`,
//! `coalesced`, `split`), so a test can count them in the file.

use std::fmt::Write as _;

use smolsock::trace::{Conn, Event, Flags, Record, Tally};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const SEQ_TOP: f64 = 70.0;
const SEQ_HEIGHT: f64 = 240.0;
const BUF_TOP: f64 = SEQ_TOP + SEQ_HEIGHT + 40.0;
const BUF_HEIGHT: f64 = 110.0;
const LANES_TOP: f64 = BUF_TOP + BUF_HEIGHT + 40.0;
const LANE_HEIGHT: f64 = 46.0;
const BOX: f64 = 7.0;
const LEGEND_TOP: f64 = LANES_TOP + 3.0 * LANE_HEIGHT + 44.0;
const HEIGHT: f64 = LEGEND_TOP + 46.0;

const SEND_COLOR: &str = "#4a7ab8";
const RESEND_COLOR: &str = "#d03a2a";
const ACK_COLOR: &str = "#2f9a4a";
const WINDOW_COLOR: &str = "#e0901a";
const FLIGHT_COLOR: &str = "#8a4fb0";
const COALESCED_COLOR: &str = "#f2a33a";
const SPLIT_COLOR: &str = "#d03a2a";

/// What a picture shows, counted as it is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drawn {
    /// Data segments (payload or SYN/FIN) of the sender.
    pub segments: usize,
    /// Segments of the receiver (its acknowledgements).
    pub acks: usize,
    /// Application sends.
    pub sends: usize,
    /// Application reads.
    pub reads: usize,
    /// Frames delivered.
    pub frames: usize,
    /// Reads marked coalesced.
    pub coalesced: usize,
    /// Sends or frames marked split.
    pub split: usize,
}

/// The TCP connections in `records` by the direction their data went: for each
/// pair of ports that exchanged segments, the side that sent the most payload
/// first (`local` sends).
pub fn data_directions(records: &[Record]) -> Vec<Conn> {
    let key = |conn: Conn| Conn::new(conn.local.min(conn.remote), conn.local.max(conn.remote));
    let tcp: Vec<Conn> = records
        .iter()
        .filter_map(|r| match r.event {
            Event::Segment(s) => Some(key(s.conn)),
            _ => None,
        })
        .collect();
    let mut pairs: Vec<(Conn, u64, u64)> = Vec::new();
    for record in records {
        let (conn, bytes) = match record.event {
            Event::Segment(s) => (s.conn, u64::from(s.len)),
            Event::Send { conn, bytes } if tcp.contains(&key(conn)) => (conn, u64::from(bytes)),
            _ => continue,
        };
        let key = key(conn);
        let entry = match pairs.iter_mut().find(|(k, ..)| *k == key) {
            Some(entry) => entry,
            None => {
                pairs.push((key, 0, 0));
                pairs.last_mut().expect("just pushed")
            }
        };
        if conn.local == key.local {
            entry.1 += bytes;
        } else {
            entry.2 += bytes;
        }
    }
    pairs
        .into_iter()
        .map(|(key, forward, back)| if back > forward { key.reversed() } else { key })
        .collect()
}

/// Escapes text for an SVG text node or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Which of `spans` (end offsets, each starting where the last ended) have an end
/// of `cuts` strictly inside.
fn crossed(spans: &[u64], cuts: &[u64]) -> Vec<bool> {
    let mut start = 0;
    spans
        .iter()
        .map(|&end| {
            let hit = cuts.iter().any(|&cut| cut > start && cut < end);
            start = end;
            hit
        })
        .collect()
}

fn ends(lens: impl Iterator<Item = u64>) -> Vec<u64> {
    lens.scan(0, |end, n| {
        *end += n;
        Some(*end)
    })
    .collect()
}

/// Maps times and values to the page.
struct Scale {
    t0: f64,
    t1: f64,
}

impl Scale {
    fn x(&self, micros: u64) -> f64 {
        let span = (self.t1 - self.t0).max(1.0);
        LEFT + (micros as f64 - self.t0) / span * (WIDTH - LEFT - RIGHT)
    }
}

fn y_of(value: f64, max: f64, top: f64, height: f64) -> f64 {
    top + height - value / max.max(1.0) * height
}

/// A step line through `points` (time, value), holding each value until the next.
fn step_path(points: &[(u64, f64)], scale: &Scale, max: f64, top: f64, height: f64) -> String {
    let mut d = String::new();
    let mut last_y = None;
    for &(t, v) in points {
        let (x, y) = (scale.x(t), y_of(v, max, top, height));
        match last_y {
            None => {
                let _ = write!(d, "M{x:.1},{y:.1}");
            }
            Some(_) => {
                let _ = write!(d, " H{x:.1} V{y:.1}");
            }
        }
        last_y = Some(y);
    }
    if last_y.is_some() {
        let _ = write!(d, " H{:.1}", WIDTH - RIGHT);
    }
    d
}

/// Round numbers for an axis from 0 to `max`: about five ticks.
fn ticks(max: f64) -> Vec<f64> {
    if max <= 0.0 {
        return vec![0.0];
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|v| *v <= max * 1.0001)
        .collect()
}

/// The time axis of `mine` (in time order): its first time, and the scale from
/// it to its last (at least a millisecond, but at the clock's very end).
fn time_scale(mine: &[&Record]) -> (u64, Scale) {
    let t0 = mine.first().map_or(0, |r| r.at.total_micros());
    let t1 = mine
        .last()
        .map_or(1, |r| r.at.total_micros())
        .max(t0.saturating_add(1000));
    let scale = Scale {
        t0: t0 as f64,
        t1: t1 as f64,
    };
    (t0, scale)
}

/// The opening of a picture: the `<svg>` element with `attributes`, a white
/// page, the title and, beneath, `subtitle` and the command that made it.
fn page_head(attributes: &str, title: &str, subtitle: &str, command: &str) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\" font-size=\"11\" {attributes}>"
    );
    let _ = writeln!(
        svg,
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{LEFT}\" y=\"40\" fill=\"#555\">{}; made by: {}</text>",
        escape(title),
        escape(subtitle),
        escape(command)
    );
    svg
}

/// A lane's name and whose it is, left of a faint line across the page at `y`.
fn lane_label(svg: &mut String, y: f64, name: &str, port: u16) {
    let _ = writeln!(
        svg,
        "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" font-weight=\"bold\">{name}</text>\n\
         <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#777\" font-size=\"9\">by port {port}</text>\n\
         <line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>",
        LEFT - 8.0,
        y + 1.0,
        LEFT - 8.0,
        y + 12.0,
        WIDTH - RIGHT
    );
}

/// Draws `data`'s picture (`data.local` sends, `data.remote` receives) from
/// `records`, titled `title`, with the command that made it beneath.
pub fn render(records: &[Record], data: Conn, title: &str, command: &str) -> (String, Drawn) {
    let receiver = data.reversed();
    let mine: Vec<&Record> = records
        .iter()
        .filter(|r| r.event.conn().same(data))
        .collect();
    let (t0, scale) = time_scale(&mine);
    let mut drawn = Drawn::default();
    // The receiver's reads; for an echo whose server is not traced, the
    // sender's own reads of what came back (the same bytes, in the same order).
    let has_reads = |end: Conn| {
        mine.iter().any(|r| {
            matches!(r.event, Event::Read { conn, .. } | Event::Frame { conn, .. } if conn == end)
        })
    };
    let reader = if !has_reads(receiver) && has_reads(data) {
        data
    } else {
        receiver
    };
    // What the trace holds, added up by the library (`Tally`), beside what is
    // drawn below: a reader of the file can check one against the other.
    let (sent, read) = (
        Tally::of(records.iter(), data),
        Tally::of(records.iter(), reader),
    );
    let mut svg = page_head(
        &format!(
            "data-sends=\"{}\" data-reads=\"{}\" data-frames=\"{}\" data-acks=\"{}\"",
            sent.sends, read.reads, read.frames, sent.segments_in
        ),
        title,
        &format!("port {} sends to port {}", data.local, data.remote),
        command,
    );

    // --- 1. time-sequence graph -------------------------------------------------
    let segments: Vec<(u64, smolsock::trace::Segment)> = mine
        .iter()
        .filter_map(|r| match r.event {
            Event::Segment(s) => Some((r.at.total_micros(), s)),
            _ => None,
        })
        .collect();
    let sender_syn = segments
        .iter()
        .find(|(_, s)| s.conn == data && s.flags.contains(Flags::SYN));
    let receiver_syn = segments
        .iter()
        .find(|(_, s)| s.conn == receiver && s.flags.contains(Flags::SYN));
    let base = sender_syn
        .map(|(_, s)| s.seq.wrapping_add(1))
        .or_else(|| {
            segments
                .iter()
                .find(|(_, s)| s.conn == data)
                .map(|(_, s)| s.seq)
        })
        .unwrap_or(0);
    let relative = |seq: u32| f64::from(seq.wrapping_sub(base).cast_signed());
    let scale_shift = match (sender_syn, receiver_syn) {
        (Some((_, a)), Some((_, b))) if a.window_scale.is_some() => b.window_scale.unwrap_or(0),
        _ => 0,
    };
    let mut acks: Vec<(u64, f64)> = Vec::new();
    let mut windows: Vec<(u64, f64)> = Vec::new();
    let mut flight: Vec<(u64, f64)> = Vec::new();
    let (mut highest_sent, mut highest_acked) = (0f64, 0f64);
    let mut seq_max = 1f64;
    let mut window_max = 0f64;
    for &(t, s) in &segments {
        if s.conn == data {
            let end = relative(s.seq) + f64::from(s.len);
            highest_sent = highest_sent.max(end);
            seq_max = seq_max.max(end);
        } else if s.flags.contains(Flags::ACK) {
            let ack = relative(s.ack);
            let shift = if s.flags.contains(Flags::SYN) {
                0
            } else {
                scale_shift
            };
            let edge = ack + f64::from(u32::from(s.window) << shift);
            highest_acked = highest_acked.max(ack);
            acks.push((t, ack.max(0.0)));
            windows.push((t, edge.max(0.0)));
            seq_max = seq_max.max(ack);
            window_max = window_max.max(edge);
        }
        flight.push((t, (highest_sent - highest_acked).max(0.0)));
    }
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.0}\" font-weight=\"bold\">sequence number (bytes from the first data byte) against time</text>",
        SEQ_TOP - 8.0
    );
    // The data sets the scale. A window edge far above it (a receive buffer much
    // larger than the data) gets a scale of its own, marked on the right in the
    // window's colour, so that its line is drawn and not clipped away.
    seq_max *= 1.15;
    axes(&mut svg, &scale, SEQ_TOP, SEQ_HEIGHT, seq_max, "B", true);
    let window_scale = if window_max > seq_max {
        let own = window_max * 1.15;
        for v in ticks(own) {
            let y = y_of(v, own, SEQ_TOP, SEQ_HEIGHT);
            let _ = writeln!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{WINDOW_COLOR}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{WINDOW_COLOR}\" font-size=\"9\">{v} B</text>",
                WIDTH - RIGHT - 5.0,
                WIDTH - RIGHT,
                WIDTH - RIGHT - 7.0,
                y + 3.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{WINDOW_COLOR}\">ACK + window: the scale on the right (up to {window_max} B)</text>",
            WIDTH - RIGHT - 6.0,
            SEQ_TOP - 8.0
        );
        own
    } else {
        seq_max
    };
    let _ = writeln!(
        svg,
        "<path class=\"window\" d=\"{}\" fill=\"none\" stroke=\"{WINDOW_COLOR}\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\"/>",
        step_path(&windows, &scale, window_scale, SEQ_TOP, SEQ_HEIGHT)
    );
    let _ = writeln!(
        svg,
        "<path d=\"{}\" fill=\"none\" stroke=\"{ACK_COLOR}\" stroke-width=\"1.5\"/>",
        step_path(&acks, &scale, seq_max, SEQ_TOP, SEQ_HEIGHT)
    );
    for &(t, s) in &segments {
        if s.conn == receiver {
            drawn.acks += 1;
            let y = y_of(relative(s.ack).max(0.0), seq_max, SEQ_TOP, SEQ_HEIGHT);
            let _ = writeln!(
                svg,
                "<circle class=\"ack\" cx=\"{:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{ACK_COLOR}\"><title>ack {} win {} at {}</title></circle>",
                scale.x(t),
                relative(s.ack),
                s.window,
                ms(t - t0)
            );
            continue;
        }
        let control = s.flags.contains(Flags::SYN) || s.flags.contains(Flags::FIN);
        if s.len == 0 && !control {
            continue;
        }
        drawn.segments += 1;
        let start = relative(s.seq);
        let end = start + f64::from(s.len.max(1));
        let resent = s.len > 0 && start < segments_before(&segments, t, data, &relative);
        let color = if resent { RESEND_COLOR } else { SEND_COLOR };
        let x = scale.x(t);
        let (y0, y1) = (
            y_of(start.max(0.0), seq_max, SEQ_TOP, SEQ_HEIGHT),
            y_of(end.max(0.0), seq_max, SEQ_TOP, SEQ_HEIGHT),
        );
        let _ = writeln!(
            svg,
            "<path class=\"segment\" d=\"M{:.1},{y0:.1} H{:.1} M{x:.1},{y0:.1} V{y1:.1} M{:.1},{y1:.1} H{:.1}\" \
             stroke=\"{color}\" stroke-width=\"1.5\"><title>seq {start} len {} [{}] at {}</title></path>",
            x - 2.5,
            x + 2.5,
            x - 2.5,
            x + 2.5,
            s.len,
            s.flags,
            ms(t - t0)
        );
    }

    // --- 2. buffer occupancy ----------------------------------------------------
    let mut send_buffer: Vec<(u64, f64)> = Vec::new();
    let mut recv_buffer: Vec<(u64, f64)> = Vec::new();
    let (mut buf_max, mut capacity) = (1f64, (0u32, 0u32));
    for record in &mine {
        if let Event::Buffers(b) = record.event {
            let t = record.at.total_micros();
            if b.conn == data {
                send_buffer.push((t, f64::from(b.send_queued)));
                buf_max = buf_max.max(f64::from(b.send_queued));
                capacity.0 = b.send_capacity;
            } else if b.conn == receiver {
                recv_buffer.push((t, f64::from(b.recv_queued)));
                buf_max = buf_max.max(f64::from(b.recv_queued));
                capacity.1 = b.recv_capacity;
            }
        }
    }
    buf_max = flight.iter().fold(buf_max, |m, p| m.max(p.1)) * 1.15;
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.0}\"><tspan font-weight=\"bold\">bytes held</tspan> in the sender's send buffer \
         (of {} B), the receiver's receive buffer (of {} B), and in flight</text>",
        BUF_TOP - 8.0,
        capacity.0,
        capacity.1
    );
    axes(&mut svg, &scale, BUF_TOP, BUF_HEIGHT, buf_max, "B", false);
    for (points, color, class, width) in [
        (&send_buffer, SEND_COLOR, "send-buffer", 2.0),
        (&recv_buffer, ACK_COLOR, "recv-buffer", 2.0),
        (&flight, FLIGHT_COLOR, "in-flight", 1.2),
    ] {
        let _ = writeln!(
            svg,
            "<path class=\"{class}\" d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\"/>",
            step_path(points, &scale, buf_max, BUF_TOP, BUF_HEIGHT)
        );
    }

    // --- 3. lanes: sends, reads, frames ------------------------------------------
    let lane = |t: u64, bytes: u32| (t, u64::from(bytes));
    let sends: Vec<(u64, u64)> = mine
        .iter()
        .filter_map(|r| match r.event {
            Event::Send { conn, bytes } if conn == data => Some(lane(r.at.total_micros(), bytes)),
            _ => None,
        })
        .collect();
    let reads: Vec<(u64, u64)> = mine
        .iter()
        .filter_map(|r| match r.event {
            Event::Read { conn, bytes } if conn == reader && bytes > 0 => {
                Some(lane(r.at.total_micros(), bytes))
            }
            _ => None,
        })
        .collect();
    let frames: Vec<(u64, u64)> = mine
        .iter()
        .filter_map(|r| match r.event {
            Event::Frame { conn, body, header } if conn == reader => {
                Some((r.at.total_micros(), u64::from(body) + u64::from(header)))
            }
            _ => None,
        })
        .collect();
    let send_ends = ends(sends.iter().map(|s| s.1));
    let read_ends = ends(reads.iter().map(|r| r.1));
    let frame_ends = ends(frames.iter().map(|f| f.1));
    // Messages are the frames when the reader cuts frames, the sends otherwise.
    let message_ends = if frames.is_empty() {
        &send_ends
    } else {
        &frame_ends
    };
    let coalesced = crossed(&read_ends, message_ends);
    let send_split = crossed(&send_ends, &read_ends);
    let frame_split = crossed(&frame_ends, &read_ends);
    let lane_y = |i: f64| LANES_TOP + i * LANE_HEIGHT;
    let send_x = spread(&sends, &scale);
    let read_x = spread(&reads, &scale);
    let frame_x = spread(&frames, &scale);
    let lanes = [
        ("sends", data.local),
        ("reads", reader.local),
        ("frames", reader.local),
    ];
    for (i, (name, port)) in lanes.iter().enumerate() {
        lane_label(&mut svg, lane_y(i as f64) + LANE_HEIGHT / 2.0, name, *port);
    }
    // Which sends each read carried bytes of: a line from send to read.
    let send_mid = lane_y(0.0) + LANE_HEIGHT / 2.0;
    let read_mid = lane_y(1.0) + LANE_HEIGHT / 2.0;
    let frame_mid = lane_y(2.0) + LANE_HEIGHT / 2.0;
    let read_lane = (&read_ends[..], &read_x[..], read_mid);
    links(&mut svg, (&send_ends, &send_x, send_mid), read_lane);
    links(&mut svg, (&frame_ends, &frame_x, frame_mid), read_lane);
    for (i, &(t, bytes)) in sends.iter().enumerate() {
        drawn.sends += 1;
        // With frames, the frames lane carries the split marks.
        let split = frames.is_empty() && send_split[i];
        drawn.split += usize::from(split);
        mark(
            &mut svg,
            "send",
            send_x[i],
            send_mid,
            SEND_COLOR,
            split,
            bytes,
            t - t0,
        );
    }
    for (i, &(t, bytes)) in reads.iter().enumerate() {
        drawn.reads += 1;
        drawn.coalesced += usize::from(coalesced[i]);
        let color = if coalesced[i] {
            COALESCED_COLOR
        } else {
            "#9ab"
        };
        let class = if coalesced[i] {
            "read coalesced"
        } else {
            "read"
        };
        mark(
            &mut svg,
            class,
            read_x[i],
            read_mid,
            color,
            false,
            bytes,
            t - t0,
        );
    }
    for (i, &(t, bytes)) in frames.iter().enumerate() {
        drawn.frames += 1;
        drawn.split += usize::from(frame_split[i]);
        mark(
            &mut svg,
            "frame",
            frame_x[i],
            frame_mid,
            ACK_COLOR,
            frame_split[i],
            bytes,
            t - t0,
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.0}\" fill=\"#333\">{} sends, {} reads ({} coalesced), {} frames; {} split across reads</text>",
        lane_y(3.0) + 14.0,
        drawn.sends,
        drawn.reads,
        drawn.coalesced,
        drawn.frames,
        drawn.split
    );
    legend(&mut svg);
    svg.push_str("</svg>\n");
    (svg, drawn)
}

/// The highest sequence number `data` had sent before time `t`.
fn segments_before(
    segments: &[(u64, smolsock::trace::Segment)],
    t: u64,
    data: Conn,
    relative: &dyn Fn(u32) -> f64,
) -> f64 {
    segments
        .iter()
        .take_while(|(at, _)| *at < t)
        .filter(|(_, s)| s.conn == data)
        .map(|(_, s)| relative(s.seq) + f64::from(s.len))
        .fold(0.0, f64::max)
}

/// Positions of lane marks: at their time, but never on top of the one before.
fn spread(items: &[(u64, u64)], scale: &Scale) -> Vec<f64> {
    // Crowded lanes pack their marks closer, down to overlapping; never past
    // the right edge.
    let room = WIDTH - LEFT - RIGHT;
    let step = (BOX + 1.0).min(room / items.len().max(1) as f64);
    let mut last = f64::MIN;
    let mut xs: Vec<f64> = items
        .iter()
        .map(|&(t, _)| {
            let x = scale.x(t).max(last + step);
            last = x;
            x
        })
        .collect();
    let mut next = WIDTH - RIGHT + step;
    for x in xs.iter_mut().rev() {
        *x = x.min(next - step);
        next = *x;
    }
    xs
}

/// Thin lines from each piece of one lane to every piece of another that shares
/// bytes of the stream with it (pieces given by their end offsets).
fn links(svg: &mut String, a: (&[u64], &[f64], f64), b: (&[u64], &[f64], f64)) {
    let ((a_ends, a_x, a_y), (b_ends, b_x, b_y)) = (a, b);
    let (a_dy, b_dy) = if a_y < b_y { (BOX, -BOX) } else { (-BOX, BOX) };
    let mut first = 0;
    let mut a_start = 0;
    for (j, &a_end) in a_ends.iter().enumerate() {
        let mut b_start = if first == 0 { 0 } else { b_ends[first - 1] };
        for (i, &b_end) in b_ends.iter().enumerate().skip(first) {
            if b_start >= a_end {
                break;
            }
            if b_end > a_start {
                let _ = writeln!(
                    svg,
                    "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#bbb\" stroke-width=\"0.8\"/>",
                    a_x[j],
                    a_y + a_dy,
                    b_x[i],
                    b_y + b_dy
                );
            }
            if b_end <= a_end {
                first = i + 1;
            }
            b_start = b_end;
        }
        a_start = a_end;
    }
}

#[allow(clippy::too_many_arguments)]
fn mark(
    svg: &mut String,
    class: &str,
    x: f64,
    y: f64,
    fill: &str,
    split: bool,
    bytes: u64,
    at: u64,
) {
    let stroke = if split {
        format!("stroke=\"{SPLIT_COLOR}\" stroke-width=\"2.5\"")
    } else {
        "stroke=\"#456\" stroke-width=\"0.6\"".to_string()
    };
    let class = if split {
        format!("{class} split")
    } else {
        class.to_string()
    };
    let _ = writeln!(
        svg,
        "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{BOX}\" height=\"{:.1}\" fill=\"{fill}\" {stroke}><title>{bytes} B at {}</title></rect>",
        x - BOX / 2.0,
        y - BOX,
        2.0 * BOX,
        ms(at)
    );
}

/// A panel's frame, its value axis (0 to `max`) and, below the last panel, time.
fn axes(svg: &mut String, scale: &Scale, top: f64, height: f64, max: f64, unit: &str, time: bool) {
    let bottom = top + height;
    let _ = writeln!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#fafafa\" stroke=\"#999\"/>",
        WIDTH - LEFT - RIGHT
    );
    for v in ticks(max) {
        let y = y_of(v, max, top, height);
        let _ = writeln!(
            svg,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{LEFT}\" y2=\"{y:.1}\" stroke=\"#999\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v} {unit}</text>",
            LEFT - 4.0,
            LEFT - 6.0,
            y + 4.0
        );
    }
    if time {
        let span_ms = (scale.t1 - scale.t0) / 1000.0;
        for v in ticks(span_ms) {
            let x = scale.x((scale.t0 + v * 1000.0) as u64);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v} ms</text>",
                bottom + 4.0,
                bottom + 15.0
            );
        }
    }
}

fn legend(svg: &mut String) {
    let items = [
        ("line", SEND_COLOR, "data segment (seq..seq+len)"),
        ("line", RESEND_COLOR, "resent"),
        ("line", ACK_COLOR, "ACK; receive buffer"),
        ("line", SEND_COLOR, "send buffer"),
        ("dash", WINDOW_COLOR, "ACK + advertised window"),
        ("line", FLIGHT_COLOR, "bytes in flight"),
        ("box", COALESCED_COLOR, "coalesced read"),
        ("split", "white", "split: took several reads"),
    ];
    let mut x = LEFT;
    let mut y = LEGEND_TOP;
    for (kind, color, label) in items {
        let width = 22.0 + 6.2 * label.len() as f64 + 14.0;
        if x + width > WIDTH - RIGHT {
            x = LEFT;
            y += 18.0;
        }
        let swatch = match kind {
            "dash" => format!(
                "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"5,3\"/>",
                x + 18.0
            ),
            "box" => format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"{color}\" stroke=\"#456\"/>",
                x + 3.0,
                y - 5.0
            ),
            "split" => format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"{color}\" stroke=\"{SPLIT_COLOR}\" stroke-width=\"2.5\"/>",
                x + 3.0,
                y - 5.0
            ),
            _ => format!(
                "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>",
                x + 18.0
            ),
        };
        let _ = writeln!(
            svg,
            "{swatch}<text x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
            x + 22.0,
            y + 4.0
        );
        x += width;
    }
}

fn ms(micros: u64) -> String {
    format!("{}.{} ms", micros / 1000, (micros % 1000) / 100)
}

/// What a picture of datagrams shows, counted as it is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrawnDatagrams {
    /// Datagrams sent by the picture's port.
    pub out: usize,
    /// Datagrams sent to it.
    pub r#in: usize,
    /// Its application's sends (`sendto`).
    pub sends: usize,
    /// Its application's reads (`recvfrom`).
    pub reads: usize,
}

/// The UDP conversations in `records`, each as its port at the centre followed by
/// the ports it exchanged datagrams with. The centre is the busiest port; its
/// datagrams make one conversation, and the rest are sorted the same way: a TFTP
/// client's request to port 69 and its transfer from the server's own port are
/// one conversation, and two clients of port 69 are two.
pub fn datagram_groups(records: &[Record]) -> Vec<Vec<u16>> {
    let mut left: Vec<Conn> = records
        .iter()
        .filter_map(|r| match r.event {
            Event::Datagram(d) => Some(d.conn),
            _ => None,
        })
        .collect();
    let mut groups = Vec::new();
    while !left.is_empty() {
        let mut counts: Vec<(u16, usize)> = Vec::new();
        for conn in &left {
            for port in [conn.local, conn.remote] {
                match counts.iter_mut().find(|(p, _)| *p == port) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((port, 1)),
                }
            }
        }
        let Some(&(hub, _)) = counts
            .iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))
        else {
            break;
        };
        let mut peers: Vec<u16> = left
            .iter()
            .filter_map(|c| match (c.local == hub, c.remote == hub) {
                (true, _) => Some(c.remote),
                (_, true) => Some(c.local),
                _ => None,
            })
            .collect();
        peers.sort_unstable_by(|a, b| b.cmp(a));
        peers.dedup();
        left.retain(|c| c.local != hub && c.remote != hub);
        groups.push(std::iter::once(hub).chain(peers).collect());
    }
    groups
}

/// Draws the datagrams that port `hub` sent and received in `records`, over
/// time, above the lanes of its application's `sendto` and `recvfrom` calls.
/// UDP has no sequence numbers, windows or stream: each datagram is one bar of
/// its payload's size, and each `recvfrom` returns one whole datagram.
pub fn render_datagrams(
    records: &[Record],
    hub: u16,
    title: &str,
    command: &str,
) -> (String, DrawnDatagrams) {
    let involves = |c: Conn| c.local == hub || c.remote == hub;
    let mine: Vec<&Record> = records
        .iter()
        .filter(|r| match r.event {
            Event::Datagram(d) => involves(d.conn),
            Event::Send { conn, .. } | Event::Read { conn, .. } => conn.local == hub,
            _ => false,
        })
        .collect();
    let (t0, scale) = time_scale(&mine);
    let mut drawn = DrawnDatagrams::default();
    let mut peers: Vec<u16> = Vec::new();
    let datagrams: Vec<(u64, smolsock::trace::Datagram)> = mine
        .iter()
        .filter_map(|r| match r.event {
            Event::Datagram(d) => Some((r.at.total_micros(), d)),
            _ => None,
        })
        .collect();
    for (_, d) in &datagrams {
        let peer = if d.conn.local == hub {
            d.conn.remote
        } else {
            d.conn.local
        };
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    // What the trace holds for each pair, added up by the library, beside what
    // is drawn below.
    let traced = peers.iter().fold(Tally::default(), |sum, &peer| {
        let t = Tally::of(records.iter(), Conn::new(hub, peer));
        Tally {
            datagrams_out: sum.datagrams_out + t.datagrams_out,
            datagrams_in: sum.datagrams_in + t.datagrams_in,
            sends: sum.sends + t.sends,
            reads: sum.reads + t.reads,
            ..sum
        }
    });
    let peers: Vec<String> = peers.iter().map(u16::to_string).collect();
    let mut svg = page_head(
        &format!(
            "data-datagrams-out=\"{}\" data-datagrams-in=\"{}\" data-sends=\"{}\" data-reads=\"{}\"",
            traced.datagrams_out, traced.datagrams_in, traced.sends, traced.reads
        ),
        title,
        &format!("UDP: port {hub} with port {}", peers.join(", ")),
        command,
    );

    // --- 1. the datagrams, one bar each -----------------------------------------
    // As in a time-sequence graph, each direction's payload bytes so far: every
    // datagram a bar from the bytes before it to the bytes after it. UDP numbers
    // nothing: the count is the capture's, not the protocol's.
    let top = SEQ_TOP;
    let height = BUF_TOP + BUF_HEIGHT - SEQ_TOP;
    let (mut total_out, mut total_in) = (0u64, 0u64);
    let mut bars: Vec<(u64, bool, u64, u64)> = Vec::new();
    let mut line_out: Vec<(u64, f64)> = Vec::new();
    let mut line_in: Vec<(u64, f64)> = Vec::new();
    for &(t, d) in &datagrams {
        let out = d.conn.local == hub;
        let (total, line) = if out {
            (&mut total_out, &mut line_out)
        } else {
            (&mut total_in, &mut line_in)
        };
        let before = *total;
        *total += u64::from(d.len);
        line.push((t, *total as f64));
        bars.push((t, out, before, *total));
    }
    let max = (total_out.max(total_in) as f64).max(1.0) * 1.15;
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.0}\" font-weight=\"bold\">payload bytes so far each way, one bar per datagram \
         (UDP: no sequence numbers, no window, no ACK)</text>",
        top - 8.0
    );
    axes(&mut svg, &scale, top, height, max, "B", true);
    for (points, color) in [(&line_out, SEND_COLOR), (&line_in, ACK_COLOR)] {
        let _ = writeln!(
            svg,
            "<path d=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"0.8\" stroke-opacity=\"0.6\"/>",
            step_path(points, &scale, max, top, height)
        );
    }
    // Datagrams sent at one instant stand side by side, in the order they went.
    let at: Vec<(u64, u64)> = bars.iter().map(|&(t, _, a, b)| (t, b - a)).collect();
    let xs = spread(&at, &scale);
    for (&(t, out, from, to), x) in bars.iter().zip(xs) {
        let (class, color) = if out {
            drawn.out += 1;
            ("datagram out", SEND_COLOR)
        } else {
            drawn.r#in += 1;
            ("datagram in", ACK_COLOR)
        };
        let (y0, y1) = (
            y_of(from as f64, max, top, height),
            y_of(to as f64, max, top, height).min(y_of(from as f64, max, top, height) - 1.0),
        );
        let _ = writeln!(
            svg,
            "<path class=\"{class}\" d=\"M{:.1},{y0:.1} H{:.1} M{x:.1},{y0:.1} V{y1:.1} M{:.1},{y1:.1} H{:.1}\" \
             stroke=\"{color}\" stroke-width=\"1.5\"><title>{} B at {}</title></path>",
            x - 2.5,
            x + 2.5,
            x - 2.5,
            x + 2.5,
            to - from,
            ms(t - t0)
        );
    }

    // --- 2. lanes: sendto, recvfrom -----------------------------------------------
    let calls = |read: bool| -> Vec<(u64, u64)> {
        mine.iter()
            .filter_map(|r| match r.event {
                Event::Send { bytes, .. } if !read => Some((r.at.total_micros(), u64::from(bytes))),
                Event::Read { bytes, .. } if read => Some((r.at.total_micros(), u64::from(bytes))),
                _ => None,
            })
            .collect()
    };
    let (sends, reads) = (calls(false), calls(true));
    let lane_y = |i: f64| LANES_TOP + i * LANE_HEIGHT + LANE_HEIGHT / 2.0;
    for (i, name) in ["sendto", "recvfrom"].iter().enumerate() {
        lane_label(&mut svg, lane_y(i as f64), name, hub);
    }
    for (lane, (calls, class, color)) in [(&sends, "send", SEND_COLOR), (&reads, "read", "#9ab")]
        .into_iter()
        .enumerate()
    {
        let xs = spread(calls, &scale);
        for (&(t, bytes), x) in calls.iter().zip(xs) {
            mark(
                &mut svg,
                class,
                x,
                lane_y(lane as f64),
                color,
                false,
                bytes,
                t - t0,
            );
        }
    }
    drawn.sends = sends.len();
    drawn.reads = reads.len();
    let calls = if sends.is_empty() && reads.is_empty() {
        "the application's calls were not traced".to_string()
    } else {
        format!(
            "{} sendto, {} recvfrom: each returns one whole datagram",
            drawn.sends, drawn.reads
        )
    };
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.0}\" fill=\"#333\">{} datagrams out ({total_out} B), {} in ({total_in} B); {calls}</text>",
        LANES_TOP + 2.0 * LANE_HEIGHT + 14.0,
        drawn.out,
        drawn.r#in,
    );
    let items = [
        (SEND_COLOR, format!("datagrams sent by port {hub}")),
        (ACK_COLOR, format!("datagrams sent to port {hub}")),
    ];
    let mut x = LEFT;
    for (color, label) in items {
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{LEGEND_TOP:.1}\" x2=\"{:.1}\" y2=\"{LEGEND_TOP:.1}\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{label}</text>",
            x + 18.0,
            x + 22.0,
            LEGEND_TOP + 4.0
        );
        x += 40.0 + 6.2 * label.len() as f64;
    }
    svg.push_str("</svg>\n");
    (svg, drawn)
}
