#![no_main]
//! Fuzz target (to be written by the module that owns the parser).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
