//! Fuzz target: `skiff_api::fuzzing::decode_and_validate` (see its docs for the input layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_api::fuzzing::decode_and_validate(data));
