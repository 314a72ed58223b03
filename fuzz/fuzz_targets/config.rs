//! Fuzz target: `eventdeck::api::fuzzing::config` (see its doc for the checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| eventdeck::api::fuzzing::config(data));
