//! Fuzz target `session`: see `aftpd_fuzz::session` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aftpd_fuzz::session(data));
