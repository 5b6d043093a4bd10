//! Fuzz target: `skiff_api::fuzzing::strategic_merge_patch` (see its docs for the input layout).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_api::fuzzing::strategic_merge_patch(data));
