//! Fuzz target: `eventdeck::api::fuzzing::query_string` (see its doc for the checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventdeck::api::fuzzing::query_string(data));
