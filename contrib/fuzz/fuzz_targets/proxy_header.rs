//! Fuzz target `proxy_header`: see `aftpd_fuzz::proxy_header` for what it
//! feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aftpd_fuzz::proxy_header(data));
