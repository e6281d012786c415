//! Per interface: throughput and total bytes from `<proc>/net/dev`, and
//! the addresses (see [`super::ifaddr`]) as a text entity with attributes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::filter::NameFilter;
use super::ifaddr::{self, Addresses, ByInterface};
use super::CollectorSection;
use super::{rate_per_second, CollectError, Collector, ProcFile, Tick};
use crate::context::{check_globs, Context};
use crate::host::HostPaths;
use crate::reading::{key, label, Kind, Label, Labels, PartLabels, Reading};

/// How long the addresses are reused: a netlink dump and an if_inet6 read
/// every cycle cost a quarter of a cycle, and addresses change rarely. An
/// interface that appears gets its addresses at once.
const ADDRESS_REFRESH: Duration = Duration::from_secs(60);

/// Reports bytes received and sent per second and in total per interface,
/// and its addresses.
#[derive(Debug)]
pub struct NetworkCollector {
    /// `<proc>/net/dev`, kept open.
    net_dev: ProcFile,
    /// `<proc>/net/if_inet6`, kept open.
    if_inet6: ProcFile,
    /// The addresses and when they were read, reused for [`ADDRESS_REFRESH`].
    addresses: Option<(Instant, ByInterface)>,
    /// Which interfaces to report (`interfaces_include`/`_exclude`).
    interfaces: NameFilter,
    /// The filter's answer for each name seen ([`KNOWN_NAMES`] at most):
    /// glob matching every line of /proc/net/dev every cycle is work the
    /// same answer does not need.
    known: HashMap<Box<str>, bool>,
    /// Each interface's counters at the previous cycle; an interface not
    /// seen then gets missing rates this cycle.
    prev: HashMap<String, InterfaceCounters>,
    /// Where the IPv4 addresses come from: the kernel, or a fixture in tests.
    dump_ipv4: fn(&mut ByInterface) -> std::io::Result<()>,
    /// The IPv4 dump failure has been logged (once, and its recovery once).
    ipv4_failing: bool,
    /// Each interface's reading keys and names ([`network_labels`]).
    labels: Labels,
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
        let real_procfs = is_symlink(&paths.proc("net"));
        NetworkCollector {
            net_dev: ProcFile::new(paths.proc("net/dev")),
            if_inet6: ProcFile::new(paths.proc("net/if_inet6")),
            addresses: None,
            interfaces: NameFilter::for_names(
                "collectors.network.interfaces",
                &config.interfaces_include,
                &config.interfaces_exclude,
            ),
            known: HashMap::new(),
            prev: HashMap::new(),
            // rtnetlink answers for the namespace the agent runs in, which
            // is the one `<proc>/net` shows when that is a real procfs (a
            // `self/net` symlink, also under a /host/proc mount); a copied
            // tree (fixtures) is another host, so no IPv4 from here then.
            dump_ipv4: if real_procfs {
                ifaddr::dump_ipv4
            } else {
                |_| Ok(())
            },
            ipv4_failing: false,
            labels: Labels::default(),
        }
    }
}

/// Every interface's addresses. Missing addresses are not a failed cycle:
/// the counters still count, the address entity shows none. Takes the
/// collector's parts, so it can run while the collector holds the text of
/// /proc/net/dev.
fn read_addresses(
    dump_ipv4: fn(&mut ByInterface) -> std::io::Result<()>,
    ipv4_failing: &mut bool,
    if_inet6: &mut ProcFile,
) -> ByInterface {
    let mut out = ByInterface::new();
    match (dump_ipv4(&mut out), *ipv4_failing) {
        (Err(error), false) => {
            tracing::warn!(%error, "cannot ask the kernel for IPv4 addresses (rtnetlink); address entities show IPv6 only");
            *ipv4_failing = true;
        }
        (Ok(()), true) => {
            tracing::info!("IPv4 addresses readable again");
            *ipv4_failing = false;
        }
        _ => {}
    }
    // No file: no IPv6 in this kernel. An unreadable /proc fails the
    // counters below loudly, so it is not reported twice.
    if let Ok(Some(text)) = if_inet6.read_optional() {
        ifaddr::add_if_inet6(text, &mut out);
    }
    out
}

/// How many interface names [`NetworkCollector`] remembers the filter's
/// answer for before it starts again.
const KNOWN_NAMES: usize = 512;

impl Collector for NetworkCollector {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let (path, text) = self.net_dev.read_with_path()?;
        let mut interfaces = Vec::new();
        for line in text.lines() {
            // The name first: the numbers of an interface left out (a
            // container's veth, lo) are not parsed at all.
            let Some((name, _)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            let allowed = match self.known.get(name) {
                Some(allowed) => *allowed,
                None => {
                    if self.known.len() >= KNOWN_NAMES {
                        // Container hosts make and drop veths all day.
                        self.known.clear();
                    }
                    let allowed = self.interfaces.allows(name);
                    self.known.insert(name.into(), allowed);
                    allowed
                }
            };
            if !allowed {
                continue;
            }
            if let Some(dev) = parse_net_dev_line(line).map_err(|e| CollectError::parse(path, e))? {
                interfaces.push(dev);
            }
        }
        // The kernel lists interfaces by hash; sorting keeps entity order stable.
        interfaces.sort_by(|a, b| a.name.cmp(b.name));
        let stale = match &self.addresses {
            Some((at, _)) => {
                tick.mono.saturating_duration_since(*at) >= ADDRESS_REFRESH
                    || interfaces.iter().any(|d| !self.prev.contains_key(d.name))
            }
            None => true,
        };
        if stale {
            let addresses = read_addresses(self.dump_ipv4, &mut self.ipv4_failing, &mut self.if_inet6);
            self.addresses = Some((tick.mono, addresses));
        }
        let (read_at, addresses) = self.addresses.take().unwrap_or((tick.mono, ByInterface::new()));
        let mut next = HashMap::with_capacity(interfaces.len());
        for dev in interfaces {
            let now = InterfaceCounters {
                received_bytes: dev.received_bytes,
                sent_bytes: dev.sent_bytes,
                at: tick.mono,
            };
            let labels = self.labels.of(dev.name, network_labels);
            out.extend(labelled_network_readings(labels, self.prev.get(dev.name), &now));
            out.push(labelled_address_reading(labels, addresses.get(dev.name)));
            next.insert(dev.name.to_string(), now);
        }
        self.prev = next;
        self.labels.sweep();
        self.addresses = Some((read_at, addresses));
        Ok(())
    }
}

fn is_symlink(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The counters of one /proc/net/dev line that the readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetDevLine<'a> {
    /// The interface's name.
    pub name: &'a str,
    /// Bytes received (the first receive column).
    pub received_bytes: u64,
    /// Bytes sent (the first transmit column, the ninth number).
    pub sent_bytes: u64,
}

/// Parses every line of /proc/net/dev (see [`parse_net_dev_line`]).
pub fn parse_net_dev(text: &str) -> Result<Vec<NetDevLine<'_>>, String> {
    text.lines()
        .filter_map(|line| parse_net_dev_line(line).transpose())
        .collect()
}

/// Parses one /proc/net/dev line (`  eth0: bytes packets errs drop fifo
/// frame compressed multicast bytes packets …`, sixteen numbers); `None`
/// for the two header lines, which have no `:`. Only the two figures
/// used are parsed, without allocating.
pub fn parse_net_dev_line(line: &str) -> Result<Option<NetDevLine<'_>>, String> {
    let Some((name, numbers)) = line.split_once(':') else {
        return Ok(None);
    };
    let bad = || format!("not a net/dev line: {line}");
    let mut fields = numbers.split_ascii_whitespace();
    let received_bytes = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    let sent_bytes = fields.nth(7).and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    if fields.nth(6).is_none() {
        return Err(bad());
    }
    Ok(Some(NetDevLine {
        name: name.trim(),
        received_bytes,
        sent_bytes,
    }))
}

/// The keys and names of interface `name`'s readings: received, sent,
/// total received, total sent, address.
pub fn network_labels(name: &str) -> PartLabels {
    [
        ("rx", "received"),
        ("tx", "sent"),
        ("rx_total", "total received"),
        ("tx_total", "total sent"),
        ("address", "address"),
    ]
    .iter()
    .map(|(k, n)| {
        (
            key(&["net", name, k]).into(),
            format!("Network {name} {n}").into(),
        )
    })
    .collect()
}

/// The receive and send rates of interface `name` since `prev` (missing
/// without an earlier sample or after the counters went backwards: the
/// interface was re-created), then the totals as the kernel counts them
/// (HA's `total_increasing` takes a drop as a counter reset).
pub fn network_readings(
    name: &str,
    prev: Option<&InterfaceCounters>,
    now: &InterfaceCounters,
) -> [Reading; 4] {
    labelled_network_readings(&network_labels(name), prev, now)
}

/// [`network_readings`] with the interface's [`network_labels`].
fn labelled_network_readings(
    labels: &[(Label, Label)],
    prev: Option<&InterfaceCounters>,
    now: &InterfaceCounters,
) -> [Reading; 4] {
    let rx = rate_per_second(
        prev.map(|p| (p.received_bytes, p.at)),
        (now.received_bytes, now.at),
    );
    let tx = rate_per_second(prev.map(|p| (p.sent_bytes, p.at)), (now.sent_bytes, now.at));
    let reading = |i, kind, value: crate::reading::Value| {
        let (key, name) = label(labels, i);
        Reading::new(key, name, kind, value)
    };
    [
        reading(0, Kind::BytesPerSecond, rx.into()),
        reading(1, Kind::BytesPerSecond, tx.into()),
        reading(2, Kind::BytesTotal, now.received_bytes.into()),
        reading(3, Kind::BytesTotal, now.sent_bytes.into()),
    ]
}

/// The interface's address as its state (the first IPv4, else the first
/// non-link-local IPv6: the one people copy, a tailnet's 100.x.y.z), with
/// every address as attributes. Diagnostic: it rarely changes.
pub fn address_reading(name: &str, addresses: Option<&Addresses>) -> Reading {
    labelled_address_reading(&network_labels(name), addresses)
}

/// [`address_reading`] with the interface's [`network_labels`].
fn labelled_address_reading(labels: &[(Label, Label)], addresses: Option<&Addresses>) -> Reading {
    let empty = Addresses::default();
    let a = addresses.unwrap_or(&empty);
    let mut attrs = serde_json::Map::new();
    let list = |v: Vec<String>| serde_json::Value::from(v);
    attrs.insert(
        "ipv4".into(),
        list(a.ipv4.iter().map(ToString::to_string).collect()),
    );
    attrs.insert(
        "ipv6".into(),
        list(a.ipv6.iter().map(ToString::to_string).collect()),
    );
    let value = a
        .primary()
        .map_or(crate::reading::Value::Missing, crate::reading::Value::Text);
    let (key, name) = label(labels, 4);
    Reading::new(key, name, Kind::Text, value)
        .diagnostic()
        .steady()
        .with_attributes(attrs)
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

    /// The IPv4 dump captured on the machine the vm fixtures resemble.
    fn fixture_ipv4(out: &mut ByInterface) -> std::io::Result<()> {
        let bytes = std::fs::read(fixture("netlink/getaddr-inet-debian12.bin"))?;
        ifaddr::add_getaddr_dump(&bytes, out);
        Ok(())
    }

    fn collector(proc: &str, config: &NetworkConfig) -> NetworkCollector {
        let mut c = NetworkCollector::new(fixture_paths(proc, "sys/vm", "root/vm"), config);
        c.dump_ipv4 = fixture_ipv4;
        c
    }

    /// Only the rates, for the tests about them.
    fn rates(readings: &[Reading]) -> Vec<(String, Value)> {
        keyed_values(readings)
            .into_iter()
            .filter(|(k, _)| k.ends_with("_rx") || k.ends_with("_tx"))
            .collect()
    }

    #[test]
    fn a_net_dev_line_gives_its_name_and_byte_counters_and_garbage_is_an_error() {
        let line = "  eth0: 1915957 1302 0 0 0 0 0 0 16207 190 0 0 0 0 0 0";
        assert_eq!(
            parse_net_dev_line(line),
            Ok(Some(NetDevLine {
                name: "eth0",
                received_bytes: 1_915_957,
                sent_bytes: 16_207
            }))
        );
        assert_eq!(parse_net_dev_line("Inter-|   Receive |  Transmit"), Ok(None));
        assert!(parse_net_dev_line("eth0: 1 2 3").is_err());
        assert!(parse_net_dev_line("eth0: x 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0").is_err());
        let text = std::fs::read_to_string(fixture("proc/vm/t0/net/dev")).expect("fixture");
        let names: Vec<_> = parse_net_dev(&text)
            .expect("parse")
            .iter()
            .map(|d| d.name)
            .collect();
        assert!(names.contains(&"eth0") && names.contains(&"lo"), "{names:?}");
    }

    #[test]
    fn two_cycles_give_bytes_per_second_and_lo_is_excluded_by_default() {
        let start = Instant::now();
        let mut c = collector("proc/vm/t0", &NetworkConfig::default());
        let first = collect_once(&mut c, &tick_at(start, 0));
        assert_eq!(rates(&first), [missing("net_eth0_rx"), missing("net_eth0_tx")]);
        c.net_dev = ProcFile::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm").proc("net/dev"));
        let second = collect_once(&mut c, &tick_at(start, 10));
        // eth0: 1915957 bytes in and 16207 out in the 10 s between.
        assert_eq!(
            rates(&second),
            [
                ("net_eth0_rx".to_string(), Value::Float(1_915_957.0 / 10.0)),
                ("net_eth0_tx".to_string(), Value::Float(16_207.0 / 10.0)),
            ]
        );
        let names: Vec<_> = second.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Network eth0 received",
                "Network eth0 sent",
                "Network eth0 total received",
                "Network eth0 total sent",
                "Network eth0 address"
            ]
        );
    }

    #[test]
    fn an_interface_first_seen_this_cycle_has_missing_rates() {
        let start = Instant::now();
        let only_eth0 = NetworkConfig {
            interfaces_include: vec!["eth0".into()],
            ..NetworkConfig::default()
        };
        let mut c = collector("proc/vm/t0", &only_eth0);
        collect_once(&mut c, &tick_at(start, 0));
        c.interfaces = NameFilter::for_names("k", &[], &[]);
        c.known.clear();
        c.net_dev = ProcFile::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm").proc("net/dev"));
        let out = collect_once(&mut c, &tick_at(start, 10));
        let keys: Vec<_> = out
            .iter()
            .map(|r| r.key.as_str())
            .filter(|k| k.ends_with("_rx") || k.ends_with("_tx"))
            .collect();
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
            rates(&out),
            [missing("net_wg_home_rx"), missing("net_wg_home_tx")]
        );
        assert_eq!(value_of(&out, "net_wg_home_rx_total"), Value::Int(100));
        assert_eq!(
            out.first().map(|r| r.name.as_str()),
            Some("Network wg-home received")
        );
    }

    #[test]
    fn totals_are_the_kernel_counters_and_the_address_is_the_first_ipv4() {
        let mut c = collector("proc/vm/t1", &NetworkConfig::default());
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert!(matches!(value_of(&out, "net_eth0_rx_total"), Value::Int(n) if n > 0));
        assert!(matches!(value_of(&out, "net_eth0_tx_total"), Value::Int(n) if n > 0));
        let total = out.iter().find(|r| r.key == "net_eth0_rx_total").expect("total");
        assert_eq!(total.kind, Kind::BytesTotal);
        let addr = out.iter().find(|r| r.key == "net_eth0_address").expect("address");
        assert_eq!(addr.value, Value::Text("192.0.2.2".into()));
        assert!(addr.diagnostic);
        let attrs = addr.attributes.as_ref().expect("attributes");
        assert_eq!(attrs["ipv4"], serde_json::json!(["192.0.2.2"]));
    }

    #[test]
    fn a_tailnet_interface_shows_its_100_x_address_and_its_ula() {
        let mut c = collector("proc/tailnet", &NetworkConfig::default());
        c.dump_ipv4 = |out| {
            let bytes = std::fs::read(fixture("netlink/getaddr-inet-tailnet.bin"))?;
            ifaddr::add_getaddr_dump(&bytes, out);
            Ok(())
        };
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(
            value_of(&out, "net_tailscale0_address"),
            Value::Text("100.101.102.103".into())
        );
        let r = out
            .iter()
            .find(|r| r.key == "net_tailscale0_address")
            .expect("address");
        let v6 = &r.attributes.as_ref().expect("attrs")["ipv6"];
        assert_eq!(v6[0], "fd7a:115c:a1e0::1234");
    }

    #[test]
    fn addresses_are_reused_for_a_minute_unless_an_interface_appears() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DUMPS: AtomicUsize = AtomicUsize::new(0);
        let start = Instant::now();
        let mut c = collector("proc/vm/t0", &NetworkConfig::default());
        c.dump_ipv4 = |out| {
            DUMPS.fetch_add(1, Ordering::SeqCst);
            fixture_ipv4(out)
        };
        for secs in [0, 10, 50] {
            let out = collect_once(&mut c, &tick_at(start, secs));
            assert_eq!(
                value_of(&out, "net_eth0_address"),
                Value::Text("192.0.2.2".into())
            );
        }
        assert_eq!(DUMPS.load(Ordering::SeqCst), 1);
        collect_once(&mut c, &tick_at(start, 60));
        assert_eq!(DUMPS.load(Ordering::SeqCst), 2);
        c.interfaces = NameFilter::for_names("k", &[], &[]);
        c.known.clear();
        c.prev.remove("eth0");
        collect_once(&mut c, &tick_at(start, 70));
        assert_eq!(
            DUMPS.load(Ordering::SeqCst),
            3,
            "a new interface reads them at once"
        );
    }

    #[test]
    fn a_failing_ipv4_dump_still_gives_counters_and_ipv6() {
        let mut c = collector("proc/tailnet", &NetworkConfig::default());
        c.dump_ipv4 = |_| Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(
            value_of(&out, "net_tailscale0_address"),
            Value::Text("fd7a:115c:a1e0::1234".into())
        );
        assert_eq!(value_of(&out, "net_tailscale0_rx_total"), Value::Int(516));
    }
}
