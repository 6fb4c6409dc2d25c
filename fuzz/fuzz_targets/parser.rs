//! The HTTP request parser (`vkv::http::parser`) over arbitrary bytes: it
//! never panics, never consumes more than it was given, never completes a
//! body over the limit, and its answer does not depend on how the bytes
//! were split into reads (the first input byte picks the read size).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vkv::http::parser::{ParseLimits, Progress, RequestParser};

const LIMITS: ParseLimits = ParseLimits {
    max_body_bytes: 4096,
    max_request_line: 256,
    max_header_bytes: 512,
    max_headers: 16,
};

/// What the parser made of `stream` arriving in reads of `step` bytes: the
/// requests it completed, then the status it rejected the rest with.
fn parse(stream: &[u8], step: usize) -> (Vec<String>, Option<u16>) {
    let mut parser = RequestParser::new(LIMITS);
    let (mut buf, mut done) = (Vec::new(), Vec::new());
    for read in stream.chunks(step) {
        buf.extend_from_slice(read);
        loop {
            match parser.feed(&buf) {
                Err(rejection) => return (done, Some(rejection.status)),
                Ok((used, progress)) => {
                    assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
                    buf.drain(..used);
                    match progress {
                        Progress::Complete(request, framing) => {
                            assert!(request.body.len() <= LIMITS.max_body_bytes);
                            done.push(format!("{request:?} {framing:?}"));
                        }
                        Progress::SendContinue => {}
                        Progress::Incomplete => break,
                    }
                }
            }
        }
    }
    (done, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let whole = parse(stream, stream.len().max(1));
    let split = parse(stream, usize::from(first % 32) + 1);
    assert_eq!(whole, split, "the answer depends on how reads split the bytes");
});
