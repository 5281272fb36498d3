//! Fuzz target `addr`: see `aftpd_fuzz::addr` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aftpd_fuzz::addr(data));
