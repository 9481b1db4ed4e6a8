//! An OTLP/HTTP body from a hostile sender: the first byte picks protobuf or JSON, gzip or
//! not, metrics or traces; the rest is the body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&flags, body)) = data.split_first() {
        headroom_collector::fuzz::otlp_http_body(flags, body);
    }
});
