//! Podman/Docker API JSON and `podman auto-update` output on any bytes:
//! the first byte picks the parser.
#![no_main]

use host2mqtt::container::{engine::Api, model, updates};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => drop(model::parse_list(Api::Libpod, json)),
        1 => drop(model::parse_list(Api::Docker, json)),
        2 => drop(model::parse_libpod_stats(json)),
        3 => drop(model::parse_docker_stats(json)),
        _ => drop(updates::parse_report(&String::from_utf8_lossy(json))),
    }
});
