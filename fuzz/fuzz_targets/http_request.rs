//! Feeds arbitrary bytes to the HTTP request-head parser, as a peer could, and
//! checks what the parser promises: no panic, a complete head is found again in its
//! own bytes, a prefix never contradicts the whole, every error maps to a 4xx/5xx,
//! and echoing parsed fields into a response head never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smolsock::wire::http::{
    HttpError, Method, ResponseHead, Status, StatusCode, is_head_request, parse_request,
};

fuzz_target!(|data: &[u8]| {
    let whole = parse_request::<16>(data);
    match &whole {
        Ok(Status::Complete { request, head_len }) => {
            assert!(*head_len <= data.len());
            assert_eq!(parse_request::<16>(&data[..*head_len]), whole);
            assert_eq!(is_head_request(data), request.method() == Method::Head);
            let _ = request.content_length();
            let _ = request.body_length();
            let _ = request.body_framing();
            let _ = request.host();
            let _ = request.keep_alive();
            let _ = (request.path(), request.query());

            let mut extra = [("", ""); 4];
            for (slot, header) in extra.iter_mut().zip(request.headers()) {
                *slot = (header.name, header.value);
            }
            let fields = &extra[..request.headers().len().min(extra.len())];
            let head = ResponseHead {
                close: !request.keep_alive(),
                extra: fields,
                ..ResponseHead::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    request.header("accept"),
                    *head_len,
                )
            };
            let mut out = [0u8; 128];
            if let Ok(len) = head.emit(&mut out) {
                assert_eq!(len, head.buffer_len());
            }
        }
        Ok(Status::Partial) => {
            let status = HttpError::for_full_buffer(data).status().as_u16();
            assert!(status == 414 || status == 431);
        }
        Err(error) => assert!(error.status().as_u16() >= 400),
    }

    // Cut where the first byte says: a prefix is partial or agrees with the whole.
    if let Some(&first) = data.first() {
        let cut = usize::from(first) % (data.len() + 1);
        match parse_request::<16>(&data[..cut]) {
            Ok(Status::Partial) => {}
            prefix => assert_eq!(prefix, whole),
        }
    }
});
