//! Fuzz target `fs`: see `aftpd_fuzz::fs` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aftpd_fuzz::fs(data));
