//! The opt-in Prometheus endpoint: the readings of the last cycle in the
//! text exposition format (version 0.0.4) on `GET /metrics`, for those who
//! run Prometheus and Grafana beside Home Assistant.
//!
//! Names follow node_exporter where it has the same quantity
//! (`node_load1`, `node_memory_MemAvailable_bytes`,
//! `node_filesystem_avail_bytes{mountpoint}`, `node_boot_time_seconds`), so
//! the panels of existing dashboards work; every other reading is
//! `host2mqtt_<key>` with its unit as suffix. Values are in base units
//! (bytes, seconds). A reading without a value this cycle is left out, as
//! an exporter does, rather than exposed as NaN.
//!
//! [`render`] is a pure function of the readings; [`serve`] is a minimal
//! HTTP/1.1 server (one request per connection) on a listener it is
//! handed. Nothing listens unless `prometheus.enabled` is set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::error::ConfigError;
use crate::reading::{Kind, Reading, Value};

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Serve the readings on `http://<listen>/metrics`. Off: no listening
    /// socket at all.
    pub enabled: bool,
    /// Address and port to listen on. Loopback by default; anything else
    /// exposes the host's metrics to the network without authentication.
    pub listen: String,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            enabled: false,
            listen: "127.0.0.1:9101".into(),
        }
    }
}

impl PrometheusConfig {
    /// Checks `listen` whether or not the endpoint is enabled, so a typo
    /// shows before someone turns it on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr().map(|_| ())
    }

    /// `listen` as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| ConfigError::Key {
            key: "prometheus.listen".into(),
            message: format!(
                "expected an address and port such as \"127.0.0.1:9101\", got {:?}",
                self.listen
            ),
        })
    }
}

/// A reading whose name follows another exporter's, with the label that
/// tells its instances apart (taken from the reading's human name, which
/// holds the raw mount point or device, unlike its slugged key).
struct Rule {
    key_prefix: &'static str,
    key_suffix: &'static str,
    metric: &'static str,
    help: &'static str,
    /// (label, text before it in the reading's name, text after it).
    label: Option<(&'static str, &'static str, &'static str)>,
}

const fn rule(
    key_prefix: &'static str,
    key_suffix: &'static str,
    metric: &'static str,
    help: &'static str,
    label: Option<(&'static str, &'static str, &'static str)>,
) -> Rule {
    Rule {
        key_prefix,
        key_suffix,
        metric,
        help,
        label,
    }
}

/// First match wins (`_inodes_used` before `_used`).
const RULES: &[Rule] = &[
    rule("load_1m", "", "node_load1", "1m load average.", None),
    rule("load_5m", "", "node_load5", "5m load average.", None),
    rule("load_15m", "", "node_load15", "15m load average.", None),
    rule(
        "memory_available",
        "",
        "node_memory_MemAvailable_bytes",
        "Memory information field MemAvailable_bytes.",
        None,
    ),
    rule(
        "memory_total",
        "",
        "node_memory_MemTotal_bytes",
        "Memory information field MemTotal_bytes.",
        None,
    ),
    rule(
        "boot_time",
        "",
        "node_boot_time_seconds",
        "Node boot time, in unixtime.",
        None,
    ),
    rule(
        "disk_",
        "_free",
        "node_filesystem_avail_bytes",
        "Filesystem space available to non-root users in bytes.",
        Some(("mountpoint", "Disk ", " free")),
    ),
    rule(
        "disk_",
        "_inodes_used",
        "host2mqtt_filesystem_inodes_used_percent",
        "Share of the filesystem's inodes in use.",
        Some(("mountpoint", "Disk ", " inodes used")),
    ),
    rule(
        "disk_",
        "_used",
        "host2mqtt_filesystem_used_percent",
        "Share of the filesystem in use, as df shows it.",
        Some(("mountpoint", "Disk ", " used")),
    ),
    rule(
        "diskio_",
        "_read",
        "host2mqtt_disk_read_bytes_per_second",
        "Bytes read from the block device per second over the last interval.",
        Some(("device", "Disk ", " read")),
    ),
    rule(
        "diskio_",
        "_write",
        "host2mqtt_disk_written_bytes_per_second",
        "Bytes written to the block device per second over the last interval.",
        Some(("device", "Disk ", " write")),
    ),
    rule(
        "net_",
        "_rx_total",
        "node_network_receive_bytes_total",
        "Network device statistic receive_bytes.",
        Some(("device", "Network ", " total received")),
    ),
    rule(
        "net_",
        "_tx_total",
        "node_network_transmit_bytes_total",
        "Network device statistic transmit_bytes.",
        Some(("device", "Network ", " total sent")),
    ),
    rule(
        "net_",
        "_rx",
        "host2mqtt_network_receive_bytes_per_second",
        "Bytes received per second over the last interval.",
        Some(("device", "Network ", " received")),
    ),
    rule(
        "net_",
        "_tx",
        "host2mqtt_network_transmit_bytes_per_second",
        "Bytes sent per second over the last interval.",
        Some(("device", "Network ", " sent")),
    ),
];

/// One metric family as it is written.
struct Family {
    kind: &'static str,
    help: String,
    /// Label set (already rendered, `{…}` or empty) → value.
    samples: BTreeMap<String, f64>,
}

/// The exposition text of one cycle's readings.
pub fn render(readings: &[Reading]) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for r in readings {
        for (metric, kind, help, labels, value) in samples_of(r) {
            let family = families.entry(metric).or_insert_with(|| Family {
                kind,
                help,
                samples: BTreeMap::new(),
            });
            // Two readings on one series (a clash of slugged names): the
            // first stays, as in the state JSON.
            family.samples.entry(labels).or_insert(value);
        }
    }
    let mut out = String::with_capacity(families.len() * 96);
    for (name, f) in &families {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {name} {}", f.kind);
        for (labels, v) in &f.samples {
            let _ = writeln!(out, "{name}{labels} {}", format_value(*v));
        }
    }
    out
}

type Sample = (String, &'static str, String, String, f64);

/// The samples one reading gives: none without a value, one for most,
/// one per option for an enum (a state set).
fn samples_of(r: &Reading) -> Vec<Sample> {
    if let Some(rule) = RULES
        .iter()
        .find(|x| r.key.starts_with(x.key_prefix) && r.key.ends_with(x.key_suffix))
    {
        let labels = match rule.label {
            Some((label, before, after)) => {
                let value = r
                    .name
                    .strip_prefix(before)
                    .and_then(|s| s.strip_suffix(after))
                    .unwrap_or(&r.key);
                format!("{{{label}=\"{}\"}}", escape_label(value))
            }
            None => String::new(),
        };
        // A running total is a counter; everything else a gauge.
        let type_ = if matches!(r.kind, Kind::Total | Kind::BytesTotal) {
            "counter"
        } else {
            "gauge"
        };
        return number(&r.value, r.kind)
            .map(|v| vec![(rule.metric.to_string(), type_, rule.help.to_string(), labels, v)])
            .unwrap_or_default();
    }
    let base = format!("host2mqtt_{}", r.key);
    let help = r.name.to_string();
    match (r.kind, &r.value) {
        (Kind::Button, _) | (_, Value::Missing) => vec![],
        (Kind::Text, Value::Text(t)) => vec![(
            format!("{base}_info"),
            "gauge",
            help,
            format!("{{value=\"{}\"}}", escape_label(t)),
            1.0,
        )],
        (Kind::Enum(options), Value::Text(t)) => options
            .iter()
            .map(|o| {
                (
                    base.clone(),
                    "gauge",
                    help.clone(),
                    format!("{{state=\"{}\"}}", escape_label(o)),
                    if o == t { 1.0 } else { 0.0 },
                )
            })
            .collect(),
        (Kind::Update, Value::Update(u)) => vec![(
            format!("{base}_available"),
            "gauge",
            help,
            String::new(),
            if u.installed == u.latest { 0.0 } else { 1.0 },
        )],
        (kind, value) => {
            let (suffix, type_) = match kind {
                Kind::Percent => ("_percent", "gauge"),
                Kind::Bytes => ("_bytes", "gauge"),
                Kind::BytesPerSecond => ("_bytes_per_second", "gauge"),
                Kind::Milliseconds => ("_seconds", "gauge"),
                Kind::Timestamp => ("_timestamp_seconds", "gauge"),
                Kind::Total => ("_total", "counter"),
                Kind::BytesTotal => ("_bytes_total", "counter"),
                _ => ("", "gauge"),
            };
            number(value, kind)
                .map(|v| vec![(format!("{base}{suffix}"), type_, help, String::new(), v)])
                .unwrap_or_default()
        }
    }
}

/// The value in base units (seconds, bytes), or `None` to leave it out.
fn number(value: &Value, kind: Kind) -> Option<f64> {
    let v = match value {
        Value::Float(v) => *v,
        Value::Int(v) => *v as f64,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Time(t) => t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64(),
        Value::Text(_) | Value::Update(_) | Value::Missing => return None,
    };
    let v = if kind == Kind::Milliseconds { v / 1000.0 } else { v };
    v.is_finite().then_some(v)
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Longest request head read; anything longer is refused.
const MAX_REQUEST: usize = 8 * 1024;
/// A client gets this long to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `metrics` (the latest rendered text) on `listener` until the
/// task is dropped: `GET /metrics` gives the text, `GET /` a pointer to
/// it, anything else 404 or 405. One request per connection.
pub async fn serve(listener: TcpListener, metrics: watch::Receiver<String>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &metrics).await {
                        tracing::debug!(error = %e, "prometheus request failed");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(error = %e, "prometheus accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, metrics: &watch::Receiver<String>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok::<bool, std::io::Error>(true);
            }
            if buf.len() > MAX_REQUEST {
                return Ok(false);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(false);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let complete = match head {
        Ok(r) => r?,
        Err(_) => false,
    };
    let request_line =
        String::from_utf8_lossy(buf.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
    let (status, content_type, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else {
        respond(&request_line, metrics)
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    if !request_line.starts_with("HEAD ") {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Status, content type and body for a request line.
fn respond(request_line: &str, metrics: &watch::Receiver<String>) -> (&'static str, &'static str, String) {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", "text/plain", "only GET\n".into());
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.borrow().clone(),
        ),
        "/" => ("200 OK", "text/plain", "host2mqtt: metrics at /metrics\n".into()),
        _ => ("404 Not Found", "text/plain", "not found\n".into()),
    }
}

/// Binds the endpoint when enabled; `None` when it is off (no socket).
pub async fn bind(cfg: &PrometheusConfig) -> Result<Option<TcpListener>, ConfigError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let addr = cfg.listen_addr()?;
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| ConfigError::Key {
            key: "prometheus.listen".into(),
            message: format!("cannot listen on {addr}: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Update;

    fn readings() -> Vec<Reading> {
        vec![
            Reading::new("load_1m", "Load (1 min)", Kind::Load, 0.25),
            Reading::new("memory_available", "Memory available", Kind::Bytes, 2048u64),
            Reading::new("disk_root_free", "Disk / free", Kind::Bytes, 1000u64),
            Reading::new("disk_srv_a_b_free", "Disk /srv/a\"b free", Kind::Bytes, 7u64),
            Reading::new("disk_root_used", "Disk / used", Kind::Percent, 42.5),
            Reading::new("disk_root_inodes_used", "Disk / inodes used", Kind::Percent, 3.0),
            Reading::new(
                "net_eth0_rx",
                "Network eth0 received",
                Kind::BytesPerSecond,
                Value::Missing,
            ),
            Reading::new("cpu_usage", "CPU usage", Kind::Percent, 12.0),
            Reading::new("cycle_duration", "Cycle duration", Kind::Milliseconds, 1.5),
            Reading::new("reboot_required", "Reboot required", Kind::Flag, true),
            Reading::new("version", "Agent version", Kind::Text, "0.1.0".to_string()),
            Reading::new(
                "systemd_system_state",
                "System state",
                Kind::Enum(&["running", "degraded"]),
                Value::Text("degraded".into()),
            ),
            Reading::new("unit_x_restarts", "x restarts", Kind::Total, 3u64),
            Reading::new(
                "container_web_update",
                "Container web update",
                Kind::Update,
                Value::Update(Update {
                    installed: "a".into(),
                    latest: "b".into(),
                    title: "img".into(),
                    in_progress: false,
                    summary: None,
                }),
            ),
            Reading::new("updates_apply", "Apply", Kind::Button, Value::Missing),
        ]
    }

    #[test]
    fn readings_render_with_node_exporter_names_where_they_exist() {
        let text = render(&readings());
        for line in [
            "# TYPE node_load1 gauge",
            "node_load1 0.25",
            "node_memory_MemAvailable_bytes 2048",
            "node_filesystem_avail_bytes{mountpoint=\"/\"} 1000",
            "node_filesystem_avail_bytes{mountpoint=\"/srv/a\\\"b\"} 7",
            "host2mqtt_filesystem_used_percent{mountpoint=\"/\"} 42.5",
            "host2mqtt_filesystem_inodes_used_percent{mountpoint=\"/\"} 3",
            "host2mqtt_cpu_usage_percent 12",
            "host2mqtt_cycle_duration_seconds 0.0015",
            "host2mqtt_reboot_required 1",
            "host2mqtt_version_info{value=\"0.1.0\"} 1",
            "host2mqtt_systemd_system_state{state=\"degraded\"} 1",
            "host2mqtt_systemd_system_state{state=\"running\"} 0",
            "# TYPE host2mqtt_unit_x_restarts_total counter",
            "host2mqtt_unit_x_restarts_total 3",
            "host2mqtt_container_web_update_available 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn network_totals_are_node_exporter_counters() {
        let text = render(&[Reading::new(
            "net_eth0_rx_total",
            "Network eth0 total received",
            Kind::BytesTotal,
            1024u64,
        )]);
        for line in [
            "# TYPE node_network_receive_bytes_total counter",
            "node_network_receive_bytes_total{device=\"eth0\"} 1024",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn readings_without_a_value_and_buttons_are_left_out() {
        let text = render(&readings());
        assert!(!text.contains("network_receive"), "{text}");
        assert!(!text.contains("updates_apply"), "{text}");
        assert!(!text.contains("NaN"), "{text}");
    }

    #[test]
    fn each_family_has_one_help_and_type_before_its_samples() {
        let text = render(&readings());
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut names: Vec<&str> = types.iter().filter_map(|l| l.split(' ').nth(2)).collect();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a family is split:\n{text}");
    }

    #[test]
    fn the_listen_address_is_checked_and_the_endpoint_is_off_by_default() {
        let c = PrometheusConfig::default();
        assert!(!c.enabled);
        assert!(c.validate().is_ok());
        let bad = PrometheusConfig {
            listen: "localhost".into(),
            ..c
        };
        assert!(bad
            .validate()
            .expect_err("a host without a port is refused")
            .to_string()
            .contains("prometheus.listen"));
    }

    #[tokio::test]
    async fn the_server_answers_metrics_and_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(String::from("node_load1 1\n"));
        let server = tokio::spawn(serve(listener, rx));
        let get = |target: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).await.expect("read");
            out
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nnode_load1 1\n"), "{ok}");
        tx.send_replace("node_load1 2\n".into());
        assert!(get("/metrics").await.ends_with("node_load1 2\n"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
