//! Fuzz target `vpath`: see `aftpd_fuzz::vpath` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aftpd_fuzz::vpath(data));
