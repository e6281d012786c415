//! Network throughput per interface from `<proc>/net/dev`.

use std::collections::HashMap;
use std::time::Instant;

use procfs_core::net::InterfaceDeviceStatus;
use procfs_core::{FromRead, ProcError};

use serde::Deserialize;

use super::filter::NameFilter;
use super::CollectorSection;
use super::{rate_per_second, read_parsed, CollectError, Collector, Tick};
use crate::context::{check_globs, Context};
use crate::host::HostPaths;
use crate::reading::{key, Kind, Reading};

/// Reports bytes received and sent per second per interface.
#[derive(Debug)]
pub struct NetworkCollector {
    /// Where the host's /proc is.
    paths: HostPaths,
    /// Which interfaces to report (`interfaces_include`/`_exclude`).
    interfaces: NameFilter,
    /// Each interface's counters at the previous cycle; an interface not
    /// seen then gets missing rates this cycle.
    prev: HashMap<String, InterfaceCounters>,
}

/// Cumulative bytes of one interface at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Bytes received since the interface appeared.
    pub received_bytes: u64,
    /// Bytes sent since the interface appeared.
    pub sent_bytes: u64,
    /// When they were read.
    pub at: Instant,
}

impl NetworkCollector {
    /// A collector with the filters of `config`, compiled once here.
    pub fn new(paths: HostPaths, config: &NetworkConfig) -> Self {
        NetworkCollector {
            paths,
            interfaces: NameFilter::for_names(
                "collectors.network.interfaces",
                &config.interfaces_include,
                &config.interfaces_exclude,
            ),
            prev: HashMap::new(),
        }
    }
}

impl Collector for NetworkCollector {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let status = read_parsed(&self.paths.proc("net/dev"), parse_net_dev)?;
        // procfs-core hands back a map; sorting keeps entity order stable.
        let mut interfaces: Vec<_> = status
            .0
            .into_values()
            .filter(|d| self.interfaces.allows(&d.name))
            .collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        let mut next = HashMap::new();
        for dev in interfaces {
            let now = InterfaceCounters {
                received_bytes: dev.recv_bytes,
                sent_bytes: dev.sent_bytes,
                at: tick.mono,
            };
            out.extend(network_readings(&dev.name, self.prev.get(&dev.name), &now));
            next.insert(dev.name, now);
        }
        self.prev = next;
        Ok(())
    }
}

/// Parses /proc/net/dev with procfs-core.
pub fn parse_net_dev(text: &str) -> Result<InterfaceDeviceStatus, ProcError> {
    InterfaceDeviceStatus::from_read(text.as_bytes())
}

/// The receive and send rates of interface `name` since `prev`; missing
/// without an earlier sample or after the counters went backwards (the
/// interface was re-created).
pub fn network_readings(
    name: &str,
    prev: Option<&InterfaceCounters>,
    now: &InterfaceCounters,
) -> [Reading; 2] {
    let rx = rate_per_second(
        prev.map(|p| (p.received_bytes, p.at)),
        (now.received_bytes, now.at),
    );
    let tx = rate_per_second(prev.map(|p| (p.sent_bytes, p.at)), (now.sent_bytes, now.at));
    [
        Reading::new(
            key(&["net", name, "rx"]),
            format!("Network {name} received"),
            Kind::BytesPerSecond,
            rx,
        ),
        Reading::new(
            key(&["net", name, "tx"]),
            format!("Network {name} sent"),
            Kind::BytesPerSecond,
            tx,
        ),
    ]
}

/// Network throughput per interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only interfaces matching one of these globs (empty: all).
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub interfaces_include: Vec<String>,
    /// Interfaces matching one of these globs are left out.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub interfaces_exclude: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            interfaces_include: vec![],
            interfaces_exclude: [
                "lo", "veth*", "podman*", "cni*", "docker*", "br-*", "virbr*", "vnet*", "flannel*", "cali*",
                "kube-*", "ifb*", "dummy*",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl CollectorSection for NetworkConfig {
    fn validate(&self, key: &str) -> Result<(), crate::error::ConfigError> {
        check_globs(&format!("{key}.interfaces_include"), &self.interfaces_include)?;
        check_globs(&format!("{key}.interfaces_exclude"), &self.interfaces_exclude)
    }

    fn build(&self, cx: &Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(NetworkCollector::new(cx.paths.clone(), self)) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;

    fn missing(k: &str) -> (String, Value) {
        (k.to_string(), Value::Missing)
    }

    #[test]
    fn two_cycles_give_bytes_per_second_and_lo_is_excluded_by_default() {
        let start = Instant::now();
        let mut c = NetworkCollector::new(
            fixture_paths("proc/vm/t0", "sys/vm", "root/vm"),
            &NetworkConfig::default(),
        );
        let first = collect_once(&mut c, &tick_at(start, 0));
        assert_eq!(
            keyed_values(&first),
            [missing("net_eth0_rx"), missing("net_eth0_tx")]
        );
        c.paths = fixture_paths("proc/vm/t1", "sys/vm", "root/vm");
        let second = collect_once(&mut c, &tick_at(start, 10));
        // eth0: 1915957 bytes in and 16207 out in the 10 s between.
        assert_eq!(
            keyed_values(&second),
            [
                ("net_eth0_rx".to_string(), Value::Float(1_915_957.0 / 10.0)),
                ("net_eth0_tx".to_string(), Value::Float(16_207.0 / 10.0)),
            ]
        );
        let names: Vec<_> = second.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["Network eth0 received", "Network eth0 sent"]);
    }

    #[test]
    fn an_interface_first_seen_this_cycle_has_missing_rates() {
        let start = Instant::now();
        let only_eth0 = NetworkConfig {
            interfaces_include: vec!["eth0".into()],
            ..NetworkConfig::default()
        };
        let mut c = NetworkCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"), &only_eth0);
        collect_once(&mut c, &tick_at(start, 0));
        c.interfaces = NameFilter::for_names("k", &[], &[]);
        c.paths = fixture_paths("proc/vm/t1", "sys/vm", "root/vm");
        let out = collect_once(&mut c, &tick_at(start, 10));
        let keys: Vec<_> = out.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "net_eth0_rx",
                "net_eth0_tx",
                "net_ifb0_rx",
                "net_ifb0_tx",
                "net_ifb1_rx",
                "net_ifb1_tx",
                "net_lo_rx",
                "net_lo_tx"
            ]
        );
        assert!(matches!(value_of(&out, "net_eth0_rx"), Value::Float(_)));
        assert_eq!(value_of(&out, "net_lo_rx"), Value::Missing);
    }

    #[test]
    fn a_recreated_interface_with_lower_counters_has_missing_rates() {
        let t0 = Instant::now();
        let prev = InterfaceCounters {
            received_bytes: 5000,
            sent_bytes: 5000,
            at: t0,
        };
        let now = InterfaceCounters {
            received_bytes: 100,
            sent_bytes: 100,
            at: t0 + std::time::Duration::from_secs(5),
        };
        let out = network_readings("wg-home", Some(&prev), &now);
        assert_eq!(
            keyed_values(&out),
            [missing("net_wg_home_rx"), missing("net_wg_home_tx")]
        );
        assert_eq!(
            out.first().map(|r| r.name.as_str()),
            Some("Network wg-home received")
        );
    }
}
