//! The /proc parsers on any text: the first byte picks the parser.
#![no_main]

use host2mqtt::collector::{cpu, disk, diskio, load, memory, network, pressure};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match which % 8 {
        0 => drop(cpu::parse_stat(&text)),
        1 => drop(cpu::parse_cpu_sample(&text)),
        2 => drop(memory::parse_meminfo(&text)),
        3 => drop(disk::parse_mountinfo(&text)),
        4 => drop(diskio::parse_diskstats(&text)),
        5 => drop(network::parse_net_dev(&text)),
        6 => drop(load::parse_loadavg(&text)),
        _ => drop(pressure::parse_pressure(&text)),
    }
});
