//! The config loader on any file: an error naming a key, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader reads a path; one file per fuzzing process, in memory.
    let path = std::env::temp_dir().join(format!("host2mqtt-fuzz-{}.toml", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(cfg) = host2mqtt::config::Config::load(Some(&path), Vec::new()) {
        // What `run` derives from a valid config must not panic either.
        let _ = cfg.mqtt.brokers();
        let _ = cfg.mqtt.session_protocol();
        let _ = cfg.expire_after();
        let _ = cfg.status_topic();
    }
});
