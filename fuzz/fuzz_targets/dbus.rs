//! Shaping systemd's D-Bus replies into readings, on any unit list: one
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::dbus(data));
