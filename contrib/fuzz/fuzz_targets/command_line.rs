//! Fuzz target `command_line`: see `aftpd_fuzz::command_line` for what it feeds and checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aftpd_fuzz::command_line(data));
