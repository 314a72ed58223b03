//! Fuzz target: `eventdeck::api::fuzzing::type_pattern` (see its doc for the checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventdeck::api::fuzzing::type_pattern(data));
