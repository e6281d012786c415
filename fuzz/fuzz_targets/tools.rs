//! smartctl, nvidia-smi, apt-get, dnf and rpm-ostree output on any text: the first byte picks the parser.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::tools(data));
