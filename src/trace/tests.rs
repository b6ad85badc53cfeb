use super::*;
use crate::wire::frame::{FrameReader, HeaderFormat, encode};

const CONN: Conn = Conn::new(9000, 49152);

fn at(millis: u64, event: Event) -> Record {
    Record::new(Instant::from_millis(millis), event)
}

fn send(bytes: u32) -> Event {
    Event::Send {
        conn: CONN.reversed(),
        bytes,
    }
}

#[test]
fn a_ring_that_drops_the_oldest_keeps_the_newest_and_counts() {
    let mut ring: TraceRing<3> = TraceRing::new(WhenFull::DropOldest);
    for i in 1..=10 {
        ring.record(at(i, send(i as u32)));
    }
    assert_eq!(ring.len(), 3);
    assert_eq!(ring.dropped(), 7);
    let kept: std::vec::Vec<u64> = ring.iter().map(|r| r.at.total_millis()).collect();
    assert_eq!(kept, [8, 9, 10]);
}

#[test]
fn a_ring_that_stops_keeps_the_oldest_and_counts() {
    let mut ring: TraceRing<3> = TraceRing::new(WhenFull::Stop);
    for i in 1..=10 {
        ring.record(at(i, send(i as u32)));
    }
    assert_eq!(ring.dropped(), 7);
    let kept: std::vec::Vec<u64> = ring.iter().map(|r| r.at.total_millis()).collect();
    assert_eq!(kept, [1, 2, 3]);
    ring.clear();
    assert!(ring.is_empty());
    assert_eq!(ring.dropped(), 7, "clearing keeps the count");
}

#[test]
fn no_sink_records_nothing_and_says_so() {
    let mut off: Option<TraceRing<4>> = None;
    assert!(!off.enabled());
    off.record(at(1, send(1)));
    assert!(!().enabled());
    let mut on = Some(TraceRing::<4>::new(WhenFull::Stop));
    assert!(on.enabled());
    on.record(at(1, send(1)));
    assert_eq!(on.map(|r| r.len()), Some(1));
}

#[test]
fn the_writer_writes_a_line_per_record() {
    let mut writer = TraceWriter::new(std::vec::Vec::new());
    writer.record(at(2, send(5)));
    writer.record(at(
        3,
        Event::Segment(Segment {
            conn: CONN,
            seq: 1,
            ack: 2,
            len: 3,
            window: 4,
            window_scale: Some(7),
            flags: Flags::SYN.with(Flags::ACK),
        }),
    ));
    assert_eq!(writer.written(), 2);
    let text = std::string::String::from_utf8(writer.into_inner()).unwrap();
    assert_eq!(
        text,
        "2000 49152>9000 send 5\n3000 9000>49152 segment seq 1 ack 2 len 3 win 4 flags S. wscale 7\n"
    );
}

/// A stream that takes `room` bytes more, then fails every write.
struct Choked {
    taken: std::vec::Vec<u8>,
    room: usize,
    interrupt: bool,
}

impl std::io::Write for Choked {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if core::mem::take(&mut self.interrupt) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        if self.room == 0 {
            return Err(std::io::ErrorKind::BrokenPipe.into());
        }
        let n = bytes.len().min(self.room).min(7);
        self.taken.extend_from_slice(&bytes[..n]);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_write_that_fails_part_way_cuts_one_line_and_the_next_starts_whole() {
    let mut writer = TraceWriter::new(Choked {
        taken: std::vec::Vec::new(),
        room: 10,
        interrupt: true,
    });
    // An interruption is tried again; the room ends inside the line.
    writer.record(at(2, send(5)));
    assert_eq!((writer.written(), writer.errors()), (0, 1));
    // Nothing goes out: the line is still cut, and nothing is added to it.
    writer.record(at(3, send(6)));
    assert_eq!((writer.written(), writer.errors()), (0, 2));
    writer.get_mut().room = 1000;
    writer.record(at(4, send(7)));
    writer.record(at(5, send(8)));
    assert_eq!((writer.written(), writer.errors()), (2, 2));
    let text = std::string::String::from_utf8(writer.into_inner().taken).unwrap();
    assert_eq!(
        text,
        "2000 49152\n4000 49152>9000 send 7\n5000 49152>9000 send 8\n"
    );
}

#[test]
fn a_record_whose_newline_alone_failed_is_written() {
    let line = "2000 49152>9000 send 5\n";
    let mut writer = TraceWriter::new(Choked {
        taken: std::vec::Vec::new(),
        room: line.len() - 1,
        interrupt: false,
    });
    // The record's text goes out whole; its newline fails.
    writer.record(at(2, send(5)));
    assert_eq!((writer.written(), writer.errors()), (1, 0));
    writer.get_mut().room = 1000;
    // The next line brings the newline first.
    writer.record(at(3, send(6)));
    assert_eq!((writer.written(), writer.errors()), (2, 0));
    let text = std::string::String::from_utf8(writer.into_inner().taken).unwrap();
    assert_eq!(text, "2000 49152>9000 send 5\n3000 49152>9000 send 6\n");
}

#[test]
fn a_write_that_fails_at_a_line_end_adds_no_empty_line() {
    let line = "2000 49152>9000 send 5\n";
    let mut writer = TraceWriter::new(Choked {
        taken: std::vec::Vec::new(),
        room: line.len(),
        interrupt: false,
    });
    writer.record(at(2, send(5)));
    writer.record(at(3, send(6)));
    writer.get_mut().room = 1000;
    writer.record(at(4, send(7)));
    assert_eq!((writer.written(), writer.errors()), (2, 1));
    let text = std::string::String::from_utf8(writer.into_inner().taken).unwrap();
    assert_eq!(text, std::format!("{line}4000 49152>9000 send 7\n"));
}

/// Feeds `stream` to a frame reader in pieces of the given sizes, recording each
/// read and frame as an application would; returns the reader's own counts.
fn read_in_pieces(
    stream: &[u8],
    pieces: &[usize],
    trace: &mut std::vec::Vec<Record>,
) -> crate::wire::frame::ReadStats {
    let format = HeaderFormat::NETWORK.with_max_len(200).unwrap();
    let mut reader = FrameReader::new([0u8; 256], format).unwrap();
    let mut rest = stream;
    let mut t = 0;
    for &piece in pieces.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(piece.min(rest.len()));
        rest = later;
        reader.feed(now).unwrap();
        t += 1;
        trace.record(at(
            t,
            Event::Read {
                conn: CONN,
                bytes: now.len() as u32,
            },
        ));
        while let Some(frame) = reader.next_frame() {
            trace.record(at(
                t,
                Event::Frame {
                    conn: CONN,
                    body: frame.len() as u32,
                    header: 4,
                },
            ));
        }
    }
    *reader.stats()
}

#[test]
fn the_tally_counts_coalesced_reads_and_split_frames_as_the_reader_does() {
    let mut stream = std::vec::Vec::new();
    for len in [0usize, 3, 10, 1, 40, 7, 7, 100, 2] {
        let body = std::vec![b'x'; len];
        let mut frame = [0u8; 104];
        let n = encode(HeaderFormat::NETWORK, &body, &mut frame).unwrap();
        stream.extend_from_slice(&frame[..n]);
    }
    for pieces in [
        &[1usize][..],
        &[2, 3],
        &[4],
        &[5, 11],
        &[14],
        &[60],
        &[stream.len()],
        &[3, 100, 1],
    ] {
        let mut trace = std::vec::Vec::new();
        let stats = read_in_pieces(&stream, pieces, &mut trace);
        let tally = Tally::of(trace.iter(), CONN);
        assert_eq!(tally.reads, stats.reads, "{pieces:?}");
        assert_eq!(tally.read_bytes, stats.bytes, "{pieces:?}");
        assert_eq!(tally.frames, stats.frames, "{pieces:?}");
        assert_eq!(tally.body_bytes, stats.body_bytes, "{pieces:?}");
        assert_eq!(tally.coalesced_reads, stats.coalesced_reads, "{pieces:?}");
        assert_eq!(tally.split_frames, stats.split_frames, "{pieces:?}");
        assert_eq!(tally.out_of_order, 0);
    }
}

#[test]
fn the_tally_sees_segments_both_ways_and_only_its_connection() {
    let segment = |conn| {
        Event::Segment(Segment {
            conn,
            seq: 0,
            ack: 0,
            len: 0,
            window: 0,
            window_scale: None,
            flags: Flags::ACK,
        })
    };
    let other = Conn::new(80, 49153);
    let trace = [
        at(1, segment(CONN)),
        at(2, segment(CONN.reversed())),
        at(3, segment(CONN.reversed())),
        at(4, segment(other)),
        at(3, send(9)),
    ];
    let tally = Tally::of(trace.iter(), CONN);
    assert_eq!((tally.segments_out, tally.segments_in), (1, 2));
    assert_eq!(tally.out_of_order, 1);
    let sender = Tally::of(trace.iter(), CONN.reversed());
    assert_eq!((sender.sends, sender.sent_bytes), (1, 9));
}

#[test]
fn a_traced_client_records_the_frames_it_takes_at_the_time_of_the_read() {
    use crate::session::{Framed, Session};
    let format = HeaderFormat::NETWORK.with_max_len(16).unwrap();
    let client = Framed::new((), [0u8; 20], [0u8; 20], format).unwrap();
    let mut client = client.traced(Probe::new(CONN, std::vec::Vec::new()));
    client.start(Instant::ZERO);
    assert_eq!(client.send(b"ping"), Ok(()));
    let mut space = [0u8; 64];
    assert_eq!(client.transmit(&mut space, Instant::from_millis(1)), 8);
    // Two answers in one read, the second cut short.
    let answers = [0, 0, 0, 2, b'o', b'k', 0, 0, 0, 3, b'y', b'e'];
    assert_eq!(
        client.receive(&answers, Instant::from_millis(5)),
        answers.len()
    );
    assert_eq!(client.recv(), Some(&b"ok"[..]));
    assert_eq!(client.recv(), None);
    assert_eq!(client.receive(b"s", Instant::from_millis(9)), 1);
    assert_eq!(client.recv(), Some(&b"yes"[..]));
    let records = client.probe().sink();
    let lines: std::vec::Vec<std::string::String> = records
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    assert_eq!(
        lines,
        [
            "1000 9000>49152 send 8",
            "5000 9000>49152 read 12",
            "5000 9000>49152 frame 2 header 4",
            "9000 9000>49152 read 1",
            "9000 9000>49152 frame 3 header 4",
        ]
    );
    let tally = Tally::of(records.iter(), CONN);
    let read = client.stats().read;
    assert_eq!((tally.frames, tally.reads), (read.frames, read.reads));
    assert_eq!(
        (tally.coalesced_reads, tally.split_frames),
        (read.coalesced_reads, read.split_frames)
    );
    assert_eq!((tally.coalesced_reads, tally.split_frames), (1, 1));
}

/// Takes whatever is written and fails every flush.
struct Unflushable(std::vec::Vec<u8>);

impl std::io::Write for Unflushable {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::BrokenPipe.into())
    }
}

#[test]
fn a_failed_flush_is_counted_and_told() {
    let mut writer = TraceWriter::new(std::io::BufWriter::new(Unflushable(std::vec::Vec::new())));
    for i in 1..=3 {
        writer.record(at(i, send(i as u32)));
    }
    assert_eq!((writer.written(), writer.errors()), (3, 0));
    // The lines sit in the buffer: the flush that should send them on fails.
    assert!(writer.flush().is_err());
    assert_eq!(writer.errors(), 1);
}
