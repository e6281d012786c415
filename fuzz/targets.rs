//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs`
//! (cargo-fuzz) and `tests/fuzz_corpus.rs` (which replays fuzz/corpus and
//! fuzz/regressions on every `cargo test`). Each takes any bytes and must
//! not panic.

// Each fuzz target uses one body; the corpus test uses them all.
#![allow(dead_code)]
use host2mqtt::collector::{cpu, disk, diskio, gpu, load, memory, network, oom, pressure, rpi, sensors};
use host2mqtt::container::{engine::Api, model, updates};
use host2mqtt::hardware::{nvidia, smart};
use host2mqtt::osupdate::{apt, dnf, rpmostree};
use host2mqtt::systemd::config::ManagerKind;
use host2mqtt::systemd::units::{watched_units, Layout, Snapshot, UnitInfo};

/// The selector byte and the text after it (lossy UTF-8).
fn selected(data: &[u8]) -> Option<(u8, std::borrow::Cow<'_, str>)> {
    let (&which, rest) = data.split_first()?;
    Some((which, String::from_utf8_lossy(rest)))
}

/// The config loader on any file: an error naming a key, never a panic.
pub fn config(data: &[u8]) {
    // The loader reads a path; one file per process (and thread), in memory.
    let path = std::env::temp_dir().join(format!(
        "host2mqtt-fuzz-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(cfg) = host2mqtt::wiring::Config::load(Some(&path), Vec::new()) {
        // What `check` and `run` derive from a valid config must not panic
        // either.
        let _ = cfg.mqtt.brokers();
        let _ = cfg.mqtt.session_protocol();
        let _ = host2mqtt::wiring::build(&cfg);
    }
    let _ = std::fs::remove_file(&path);
}

/// The /proc parsers on any text: the first byte picks the parser.
pub fn proc(data: &[u8]) {
    let Some((which, text)) = selected(data) else {
        return;
    };
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
}

/// Podman/Docker API JSON and `podman auto-update` output on any bytes:
/// the first byte picks the parser.
pub fn podman(data: &[u8]) {
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
}

/// Shaping systemd's D-Bus replies into readings, on any unit list: the
/// system state, the restart list (comma-separated), then one unit a line,
/// `name<TAB>load<TAB>active<TAB>sub<TAB>path<TAB>restarts`.
pub fn dbus(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let system_state = lines.next().unwrap_or_default().to_string();
    let restart: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let found: Vec<UnitInfo> = lines
        .map(|l| {
            let mut f = l.split('\t');
            let mut next = || f.next().unwrap_or_default().to_string();
            UnitInfo {
                name: next(),
                load_state: next(),
                active_state: next(),
                sub_state: next(),
                path: next(),
                n_restarts: next().parse().ok(),
            }
        })
        .collect();
    let units = watched_units(found);
    let failed = units
        .iter()
        .filter(|u| u.active_state == "failed")
        .map(|u| u.name.clone())
        .collect();
    let snap = Snapshot {
        system_state,
        failed,
        units,
    };
    for kind in [ManagerKind::System, ManagerKind::User] {
        let layout = Layout::new(kind, &restart);
        let _ = layout.initial();
        let _ = layout.readings(&snap);
        let _ = layout.buttons(&snap);
    }
}

/// One-value files of /sys (and /proc/vmstat's oom_kill) on any text: the
/// first byte picks the parser.
pub fn sysfs(data: &[u8]) {
    let Some((which, text)) = selected(data) else {
        return;
    };
    match which % 5 {
        0 => drop(gpu::parse_sysfs_u64(&text)),
        1 => drop(sensors::parse_millidegrees(&text)),
        2 => drop(sensors::parse_rpm(&text)),
        3 => drop(rpi::parse_throttled(&text)),
        _ => drop(oom::parse_vmstat_oom_kill(&text)),
    }
}

/// The output of the tools the agent runs (smartctl, nvidia-smi, apt-get,
/// dnf, rpm-ostree) on any text: the first byte picks the parser.
pub fn tools(data: &[u8]) {
    let Some((which, text)) = selected(data) else {
        return;
    };
    match which % 6 {
        0 => drop(smart::parse_scan(&text)),
        1 => drop(smart::parse_smartctl("/dev/fuzz", &text, Some(i32::from(which)))),
        2 => drop(nvidia::parse_nvidia_smi(&text)),
        3 => drop(apt::parse_simulation(&text)),
        4 => drop(dnf::parse_check_update(&text)),
        _ => drop(rpmostree::parse_status(&text)),
    }
}

/// A target's body by its name (the directory names under fuzz/corpus).
pub fn by_name(name: &str) -> Option<fn(&[u8])> {
    Some(match name {
        "config" => config,
        "proc" => proc,
        "podman" => podman,
        "dbus" => dbus,
        "sysfs" => sysfs,
        "tools" => tools,
        _ => return None,
    })
}
