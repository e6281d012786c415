//! Podman/Docker API JSON and `podman auto-update` output on any bytes:
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::podman(data));
