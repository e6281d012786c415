//! Shaping systemd's D-Bus replies into readings, on any unit list: one
//! unit a line, `name<TAB>load<TAB>active<TAB>sub<TAB>path<TAB>restarts`.
#![no_main]

use host2mqtt::systemd::config::ManagerKind;
use host2mqtt::systemd::units::{watched_units, Layout, Snapshot, UnitInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
});
