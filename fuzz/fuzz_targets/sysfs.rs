//! One-value /sys files (and /proc/vmstat's oom_kill) on any text: the first byte picks the parser.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::sysfs(data));
