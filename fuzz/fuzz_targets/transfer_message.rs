//! Feeds arbitrary bytes to the file transfer protocol's message parser, as a peer
//! on tcp/2121 could send them in a frame body, and checks what the parser
//! promises: no panic; a body that parses is exactly one message, so it encodes
//! back to the very same bytes (the encoding has one form), every shorter body of
//! a message other than DATA is `Empty` or `Truncated` and one byte more is
//! `TrailingBytes`; a name that parses is a valid `FileName`; every error is the
//! one the body's bytes call for (the type byte, the PUT flags, the magic, the
//! limit, the error code, the name) and answers with an ERROR that encodes and
//! parses back.
//!
//! Input layout: the whole input is one frame body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolsock::wire::transfer::{
    DATA_HEADER_LEN, EmitError, ErrorCode, FileName, MAGIC, MIN_MAX_BODY, Message, MessageType,
    TransferError, emit_data_header,
};

fuzz_target!(|data: &[u8]| {
    let parsed = Message::parse(data);
    match parsed {
        Ok(message) => check_message(data, &message),
        Err(error) => check_error(data, error),
    }
});

/// Where the name's length byte sits in a body of this type, for the types that
/// end with a name.
fn name_at(message_type: MessageType) -> Option<usize> {
    match message_type {
        // type, flags, size, crc
        MessageType::Put => Some(14),
        // type, offset or size
        MessageType::Get | MessageType::Entry => Some(9),
        // type
        MessageType::Stat | MessageType::Delete => Some(1),
        _ => None,
    }
}

fn check_message(data: &[u8], message: &Message<'_>) {
    let len = data.len();
    assert_eq!(message.message_type() as u8, data[0]);
    assert_eq!(
        message.buffer_len(),
        len,
        "a parsed body is one whole message"
    );

    // One form only: the message encodes back to the very same bytes.
    let mut out = vec![0u8; len];
    assert_eq!(message.emit(&mut out), Ok(len));
    assert_eq!(out, data);
    assert_eq!(Message::parse(&out).as_ref(), Ok(message));

    // One byte short: an error, and nothing written.
    let mut short = vec![0xAAu8; len - 1];
    assert_eq!(
        message.emit(&mut short),
        Err(EmitError::BufferTooSmall {
            needed: len,
            available: len - 1
        })
    );
    assert!(short.iter().all(|&b| b == 0xAA));

    // A name that parsed is a valid name, and is the body's last bytes.
    let name = match message {
        Message::Put { name, .. }
        | Message::Get { name, .. }
        | Message::Entry { name, .. }
        | Message::Stat { name }
        | Message::Delete { name } => Some(name),
        _ => None,
    };
    if let Some(name) = name {
        let at = name_at(message.message_type()).expect("a type with a name");
        assert_eq!(usize::from(data[at]), name.as_bytes().len());
        assert_eq!(&data[at + 1..], name.as_bytes());
        assert_eq!(FileName::from_bytes(name.as_bytes()).as_ref(), Ok(name));
        assert_eq!(FileName::new(name.as_str()).as_ref(), Ok(name));
    }

    if let Message::Data { offset, bytes } = *message {
        // The payload is borrowed from the body, not copied.
        assert_eq!(bytes.as_ptr(), data[DATA_HEADER_LEN..].as_ptr());
        // The header written in place is the one received.
        let mut header = [0u8; DATA_HEADER_LEN];
        assert_eq!(emit_data_header(&mut header, offset), Ok(()));
        assert_eq!(header, data[..DATA_HEADER_LEN]);
        // Only the header can be cut: a shorter DATA body is a shorter DATA.
        for cut in DATA_HEADER_LEN..len.min(DATA_HEADER_LEN + 4) {
            assert_eq!(
                Message::parse(&data[..cut]),
                Ok(Message::Data {
                    offset,
                    bytes: &bytes[..cut - DATA_HEADER_LEN]
                })
            );
        }
        for cut in 0..DATA_HEADER_LEN {
            assert_eq!(Message::parse(&data[..cut]), Err(short_error(cut)));
        }
        return;
    }

    // Every other message is at most a PUT with a 64-byte name, so each of its
    // prefixes is cheap to try.
    for cut in 0..len {
        assert_eq!(
            Message::parse(&data[..cut]),
            Err(short_error(cut)),
            "cut at {cut}"
        );
    }
    let mut longer = data.to_vec();
    longer.push(0);
    assert_eq!(Message::parse(&longer), Err(TransferError::TrailingBytes));
}

/// What a body cut to `len` bytes parses to.
fn short_error(len: usize) -> TransferError {
    if len == 0 {
        TransferError::Empty
    } else {
        TransferError::Truncated
    }
}

fn check_error(data: &[u8], error: TransferError) {
    // Every error displays, and answers with an ERROR that round-trips.
    let _ = error.to_string();
    let code = error.error_code();
    assert!(matches!(
        code,
        ErrorCode::BadMessage | ErrorCode::UnknownType | ErrorCode::InvalidName
    ));
    let reply = Message::from(error);
    assert_eq!(reply, Message::Error { code, value: 0 });
    let mut out = [0u8; 16];
    let n = reply.emit(&mut out).expect("an ERROR fits 16 bytes");
    assert_eq!(Message::parse(&out[..n]), Ok(reply));

    // Each error is the one the body's bytes call for.
    let Some(&type_byte) = data.first() else {
        assert_eq!(error, TransferError::Empty);
        return;
    };
    let Some(message_type) = MessageType::from_u8(type_byte) else {
        assert_eq!(error, TransferError::UnknownType(type_byte));
        return;
    };
    match error {
        TransferError::Empty | TransferError::UnknownType(_) => {
            panic!("{error:?} for a body with a known type byte")
        }
        TransferError::Truncated | TransferError::TrailingBytes => {}
        TransferError::BadMagic => {
            assert!(matches!(
                message_type,
                MessageType::Hello | MessageType::HelloOk
            ));
            assert_eq!(data.len(), 10);
            assert_ne!(data[1..5], MAGIC);
        }
        TransferError::MaxBodyTooSmall(max_body) => {
            assert!(matches!(
                message_type,
                MessageType::Hello | MessageType::HelloOk
            ));
            assert_eq!(data.len(), 10);
            assert_eq!(data[1..5], MAGIC);
            assert_eq!(max_body.to_be_bytes(), data[6..10]);
            assert!(max_body < MIN_MAX_BODY);
        }
        TransferError::UnknownFlags(flags) => {
            assert_eq!(message_type, MessageType::Put);
            assert_eq!(flags, data[1]);
            assert_ne!(flags & !0x01, 0);
        }
        TransferError::UnknownErrorCode(code) => {
            assert_eq!(message_type, MessageType::Error);
            assert_eq!(data.len(), 10);
            assert_eq!(code, data[1]);
            assert_eq!(ErrorCode::from_u8(code), None);
        }
        TransferError::BadName(reason) => {
            // The body is whole and the name its last field: the name is refused
            // for the reason given.
            let at = name_at(message_type).expect("only a type with a name has a bad name");
            assert_eq!(data.len(), at + 1 + usize::from(data[at]));
            assert_eq!(FileName::from_bytes(&data[at + 1..]), Err(reason));
        }
        _ => panic!("an error this target does not know: {error:?}"),
    }
}
