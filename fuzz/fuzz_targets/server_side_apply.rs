//! Fuzz target: `skiff_api::fuzzing::server_side_apply` (see its docs for the input layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_api::fuzzing::server_side_apply(data));
