//! What the engine's JSON says, as plain values: pure parsers for the list
//! and stats answers of both APIs, and the counts the host-level entities
//! show. Lenient by design: fields differ between Podman 4 and 5 and
//! between Docker API versions, so anything not needed is ignored and
//! anything missing has a default; only JSON that is not JSON, or not the
//! expected shape at all (an object where a list belongs), is an error.

use std::collections::HashMap;

use serde::Deserialize;

use super::engine::Api;

/// A container's health as its health check last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No health check, or none reported (a container not running).
    None,
    /// Checks have not settled yet.
    Starting,
    /// The last checks passed.
    Healthy,
    /// The check failed its retries.
    Unhealthy,
}

impl Health {
    fn from_word(word: &str) -> Health {
        match word.trim().to_ascii_lowercase().as_str() {
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            "starting" => Health::Starting,
            _ => Health::None,
        }
    }

    /// The word, for attributes.
    pub fn word(self) -> Option<&'static str> {
        match self {
            Health::None => None,
            Health::Starting => Some("starting"),
            Health::Healthy => Some("healthy"),
            Health::Unhealthy => Some("unhealthy"),
        }
    }
}

/// One container as the list call reports it, in either API.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    /// Full id.
    pub id: String,
    /// Name, without Docker's leading `/`.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// The engine's state word, lower-case (`running`, `exited`, …).
    pub state: String,
    /// Health as reported.
    pub health: Health,
    /// Exit code of a container that ran and stopped.
    pub exit_code: Option<i64>,
    /// Labels (`null` in Podman's JSON is none).
    pub labels: HashMap<String, String>,
}

impl Container {
    /// Running or paused: a process exists, so health and stats mean something.
    pub fn is_up(&self) -> bool {
        matches!(self.state.as_str(), "running" | "paused")
    }
}

/// libpod's list item (Podman 4.x and 5.x).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LibpodItem {
    /// Full id.
    #[serde(default)]
    id: String,
    /// Names; the first is the one shown.
    #[serde(default)]
    names: Option<Vec<String>>,
    /// Image reference.
    #[serde(default)]
    image: String,
    /// State word.
    #[serde(default)]
    state: String,
    /// Podman puts the health status here ("" without a health check).
    #[serde(default)]
    status: String,
    /// It ran and stopped.
    #[serde(default)]
    exited: bool,
    /// Its exit code, when it did.
    #[serde(default)]
    exit_code: i64,
    /// Labels; `null` when none.
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

/// Docker's list item (Docker Engine API, Podman's compatible endpoint).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerItem {
    /// Full id.
    #[serde(default)]
    id: String,
    /// Names, each with a leading `/`.
    #[serde(default)]
    names: Option<Vec<String>>,
    /// Image reference.
    #[serde(default)]
    image: String,
    /// State word.
    #[serde(default)]
    state: String,
    /// "Up 2 hours (unhealthy)", "Exited (3) 5 seconds ago".
    #[serde(default)]
    status: String,
    /// API 1.52 and later.
    #[serde(default)]
    health: Option<DockerHealth>,
    /// Labels.
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

/// Docker's health summary in the list (API 1.52+).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerHealth {
    /// `none`, `starting`, `healthy` or `unhealthy`.
    #[serde(default)]
    status: String,
}

fn first_name(names: Option<Vec<String>>, id: &str) -> String {
    names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.chars().take(12).collect())
}

/// Parses the list answer of `api`.
pub fn parse_list(api: Api, json: &[u8]) -> Result<Vec<Container>, serde_json::Error> {
    match api {
        Api::Libpod => {
            // `null` is how Podman writes an empty list in some versions.
            let items: Option<Vec<LibpodItem>> = serde_json::from_slice(json)?;
            Ok(items
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let state = c.state.to_ascii_lowercase();
                    let exit_code =
                        (c.exited || state == "exited" || state == "stopped").then_some(c.exit_code);
                    Container {
                        name: first_name(c.names, &c.id),
                        id: c.id,
                        image: c.image,
                        state,
                        health: Health::from_word(&c.status),
                        exit_code,
                        labels: c.labels.unwrap_or_default(),
                    }
                })
                .collect())
        }
        Api::Docker => {
            let items: Option<Vec<DockerItem>> = serde_json::from_slice(json)?;
            Ok(items
                .unwrap_or_default()
                .into_iter()
                .map(|c| {
                    let health = match &c.health {
                        Some(h) => Health::from_word(&h.status),
                        None => health_in_status(&c.status),
                    };
                    Container {
                        name: first_name(c.names, &c.id),
                        exit_code: exit_code_in_status(&c.status),
                        id: c.id,
                        image: c.image,
                        state: c.state.to_ascii_lowercase(),
                        health,
                        labels: c.labels.unwrap_or_default(),
                    }
                })
                .collect())
        }
    }
}

/// Docker before API 1.52 shows health only in the status text:
/// "Up 5 minutes (unhealthy)", "Up 3 seconds (health: starting)".
fn health_in_status(status: &str) -> Health {
    if status.contains("(unhealthy)") {
        Health::Unhealthy
    } else if status.contains("(healthy)") {
        Health::Healthy
    } else if status.contains("(health: starting)") {
        Health::Starting
    } else {
        Health::None
    }
}

/// "Exited (3) 5 seconds ago" → 3.
fn exit_code_in_status(status: &str) -> Option<i64> {
    let rest = status.strip_prefix("Exited (")?;
    rest.split(')').next()?.trim().parse().ok()
}

/// Every state word Podman (4.x–6) and Docker use; HA's enum sensor gets
/// exactly these options, and a word outside them is sent as unknown.
pub const STATES: &[&str] = &[
    "created",
    "initialized",
    "running",
    "paused",
    "restarting",
    "stopping",
    "stopped",
    "exited",
    "removing",
    "dead",
    "unknown",
];

/// The host-level counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// State `running`.
    pub running: u64,
    /// State `exited` or `stopped` (Podman's word for a container stopped
    /// by its runtime, not yet cleaned up).
    pub exited: u64,
    /// State `paused`.
    pub paused: u64,
    /// Any other state: created, restarting, removing, dead, …
    pub other: u64,
    /// Running (or paused) with a failing health check. A stopped
    /// container's last health is stale and not counted.
    pub unhealthy: u64,
    /// All containers.
    pub total: u64,
}

/// Counts containers by state and health.
pub fn count(containers: &[Container]) -> Counts {
    let mut c = Counts::default();
    for ct in containers {
        c.total += 1;
        match ct.state.as_str() {
            "running" => c.running += 1,
            "exited" | "stopped" => c.exited += 1,
            "paused" => c.paused += 1,
            _ => c.other += 1,
        }
        if ct.is_up() && ct.health == Health::Unhealthy {
            c.unhealthy += 1;
        }
    }
    c
}

/// One stats sample of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// CPU time the container used, in total, in nanoseconds.
    pub cpu_ns: u64,
    /// The engine's clock at the sample, in nanoseconds of wall time, so
    /// that two samples give CPU time per elapsed time.
    pub clock_ns: f64,
    /// Memory in use, in bytes (without reclaimable page cache, as
    /// `docker stats` shows it).
    pub memory_bytes: u64,
}

/// CPU use between two samples in percent of one CPU (as `podman stats` and
/// `docker stats` show it: 150 is one and a half cores busy). `None`
/// without an earlier sample or when the counters went backwards (a restart).
pub fn cpu_percent(prev: Option<Sample>, now: Sample) -> Option<f64> {
    let prev = prev?;
    let elapsed = now.clock_ns - prev.clock_ns;
    if elapsed <= 0.0 || now.cpu_ns < prev.cpu_ns {
        return None;
    }
    Some((now.cpu_ns - prev.cpu_ns) as f64 / elapsed * 100.0)
}

/// Why a stats answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// Not JSON, or not the shape expected.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// libpod answered 200 with an `Error` in the body (a container that
    /// went away between the list and the stats call).
    #[error("the engine reported an error: {0}")]
    Reported(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LibpodStatsReport {
    /// Set (even to `{}`) when the call failed.
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// One entry per container asked for.
    #[serde(default)]
    stats: Option<Vec<LibpodStats>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LibpodStats {
    /// Full id.
    #[serde(default, rename = "ContainerID")]
    container_id: String,
    /// CPU time used in total, ns.
    #[serde(default, rename = "CPUNano")]
    cpu_nano: u64,
    /// Wall clock at the sample, ns since the epoch (0: not running).
    #[serde(default)]
    system_nano: u64,
    /// Memory in use, bytes.
    #[serde(default)]
    mem_usage: u64,
}

/// Parses libpod's `/libpod/containers/stats?stream=false` answer: a sample
/// per container id. A container that is not running comes back with
/// zeros and is left out.
pub fn parse_libpod_stats(json: &[u8]) -> Result<Vec<(String, Sample)>, StatsError> {
    let report: LibpodStatsReport = serde_json::from_slice(json)?;
    if let Some(e) = report.error.filter(|e| !e.is_null()) {
        return Err(StatsError::Reported(e.to_string()));
    }
    Ok(report
        .stats
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.system_nano > 0)
        .map(|s| {
            (
                s.container_id,
                Sample {
                    cpu_ns: s.cpu_nano,
                    clock_ns: s.system_nano as f64,
                    memory_bytes: s.mem_usage,
                },
            )
        })
        .collect())
}

/// Docker's stats answer, the parts used.
#[derive(Deserialize)]
struct DockerStats {
    /// CPU counters.
    #[serde(default)]
    cpu_stats: DockerCpuStats,
    /// Memory counters.
    #[serde(default)]
    memory_stats: DockerMemoryStats,
}

/// Docker's `cpu_stats`.
#[derive(Deserialize, Default)]
struct DockerCpuStats {
    /// The container's CPU time.
    #[serde(default)]
    cpu_usage: DockerCpuUsage,
    /// Host CPU time across all CPUs, in nanoseconds.
    #[serde(default)]
    system_cpu_usage: u64,
    /// CPUs the host has online (0 in old APIs: count `percpu_usage`).
    #[serde(default)]
    online_cpus: u64,
}

/// Docker's `cpu_usage`.
#[derive(Deserialize, Default)]
struct DockerCpuUsage {
    /// CPU time used in total, ns.
    #[serde(default)]
    total_usage: u64,
    /// Per CPU (cgroup v1 only).
    #[serde(default)]
    percpu_usage: Option<Vec<u64>>,
}

/// Docker's `memory_stats`.
#[derive(Deserialize, Default)]
struct DockerMemoryStats {
    /// Memory charged to the container, bytes (page cache included).
    #[serde(default)]
    usage: u64,
    /// The cgroup's memory.stat counters.
    #[serde(default)]
    stats: Option<HashMap<String, u64>>,
}

/// Parses Docker's `/containers/{id}/stats?stream=false&one-shot=true`.
/// `None` for an empty answer (what Podman sends for a stopped container)
/// or one without a clock.
pub fn parse_docker_stats(json: &[u8]) -> Result<Option<Sample>, serde_json::Error> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let s: DockerStats = serde_json::from_slice(json)?;
    let cpus = match s.cpu_stats.online_cpus {
        0 => s
            .cpu_stats
            .cpu_usage
            .percpu_usage
            .as_ref()
            .map_or(0, |v| v.len() as u64),
        n => n,
    };
    if s.cpu_stats.system_cpu_usage == 0 || cpus == 0 {
        return Ok(None);
    }
    // As the docker CLI: page cache the kernel can reclaim is not "used".
    let cache = s.memory_stats.stats.as_ref().and_then(|m| {
        m.get("inactive_file")
            .or_else(|| m.get("total_inactive_file"))
            .copied()
    });
    Ok(Some(Sample {
        cpu_ns: s.cpu_stats.cpu_usage.total_usage,
        // Host CPU time over the number of CPUs is elapsed wall time.
        clock_ns: s.cpu_stats.system_cpu_usage as f64 / cpus as f64,
        memory_bytes: s.memory_stats.usage.saturating_sub(cache.unwrap_or(0)),
    }))
}

/// The label Docker Compose (and podman-compose) put on each container.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// One Compose project as its containers show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The project name (the label's value).
    pub name: String,
    /// Its containers.
    pub total: u64,
    /// Those running.
    pub running: u64,
    /// What is wrong, one entry per container that is not as it should
    /// be ("web: unhealthy", "worker: exited (2)"); empty: healthy.
    pub problems: Vec<String>,
}

/// What is wrong with one container of a project, if anything. Running
/// (without a failing health check) is fine, and so is having exited with
/// 0: a one-shot service (a migration) does that.
fn problem(c: &Container) -> Option<String> {
    let what = match (c.state.as_str(), c.health, c.exit_code) {
        ("running", Health::Unhealthy, _) => "unhealthy".to_string(),
        ("running", _, _) => return None,
        ("exited" | "stopped", _, Some(0)) => return None,
        ("exited" | "stopped", _, Some(code)) => format!("exited ({code})"),
        (state, _, _) => state.to_string(),
    };
    Some(format!("{}: {what}", c.name))
}

/// The Compose projects among `containers`, by name.
pub fn projects(containers: &[Container]) -> Vec<Project> {
    let mut by_name: std::collections::BTreeMap<&str, Project> = std::collections::BTreeMap::new();
    let mut members: Vec<&Container> = containers
        .iter()
        .filter(|c| c.labels.contains_key(COMPOSE_PROJECT_LABEL))
        .collect();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    for c in members {
        let Some(name) = c.labels.get(COMPOSE_PROJECT_LABEL).filter(|n| !n.is_empty()) else {
            continue;
        };
        let p = by_name.entry(name).or_insert_with(|| Project {
            name: name.clone(),
            total: 0,
            running: 0,
            problems: Vec::new(),
        });
        p.total += 1;
        if c.state == "running" {
            p.running += 1;
        }
        p.problems.extend(problem(c));
    }
    by_name.into_values().collect()
}

/// What the inspect call adds for an opted-in container that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    /// The kernel's OOM killer ended its last run.
    pub oom_killed: bool,
    /// How often the engine restarted it (its restart policy).
    pub restart_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectJson {
    #[serde(default)]
    state: InspectState,
    #[serde(default)]
    restart_count: u64,
}

#[derive(Deserialize, Default)]
struct InspectState {
    #[serde(default, rename = "OOMKilled")]
    oom_killed: bool,
}

/// Parses `GET /containers/{id}/json` (Docker) or
/// `/libpod/containers/{id}/json` (Podman): both carry `State.OOMKilled`
/// and `RestartCount`.
pub fn parse_inspect(json: &[u8]) -> Result<Inspected, serde_json::Error> {
    let i: InspectJson = serde_json::from_slice(json)?;
    Ok(Inspected {
        oom_killed: i.state.oom_killed,
        restart_count: i.restart_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/podman/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn by_name<'a>(list: &'a [Container], name: &str) -> &'a Container {
        list.iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn libpod_list_from_podman_4_3_gives_states_health_exit_codes_and_labels() {
        let list = parse_list(Api::Libpod, &fixture("4.3.1/libpod-containers-json.json")).expect("parses");
        assert_eq!(list.len(), 6);
        assert_eq!(by_name(&list, "c_run").state, "running");
        assert_eq!(
            by_name(&list, "c_run")
                .labels
                .get("host2mqtt.enable")
                .map(String::as_str),
            Some("true")
        );
        assert!(by_name(&list, "c_exit").labels.is_empty(), "null labels are none");
        assert_eq!(by_name(&list, "c_exit").exit_code, Some(3));
        assert_eq!(by_name(&list, "c_run").exit_code, None);
        assert_eq!(by_name(&list, "c_pause").state, "paused");
        assert_eq!(by_name(&list, "c_created").state, "created");
        assert_eq!(by_name(&list, "c_sick").health, Health::Unhealthy);
        assert_eq!(by_name(&list, "c_well").health, Health::Healthy);
        assert_eq!(
            count(&list),
            Counts {
                running: 3,
                exited: 1,
                paused: 1,
                other: 1,
                unhealthy: 1,
                total: 6
            }
        );
    }

    #[test]
    fn compat_list_from_podman_4_3_strips_the_leading_slash_and_has_no_health() {
        let list = parse_list(Api::Docker, &fixture("4.3.1/compat-containers-json.json")).expect("parses");
        assert_eq!(list.len(), 6);
        assert_eq!(by_name(&list, "c_exit").exit_code, Some(3));
        assert_eq!(by_name(&list, "c_sick").health, Health::None);
        let c = count(&list);
        assert_eq!((c.running, c.exited, c.paused, c.other, c.total), (3, 1, 1, 1, 6));
    }

    #[test]
    fn libpod_list_in_the_podman_5_shape_parses_the_same() {
        let list = parse_list(Api::Libpod, &fixture("5.x-docs/libpod-containers-json.json")).expect("parses");
        assert_eq!(by_name(&list, "systemd-web").health, Health::Unhealthy);
        assert_eq!(by_name(&list, "systemd-db").state, "running");
        assert_eq!(by_name(&list, "old-job").exit_code, Some(1));
        assert_eq!(count(&list).unhealthy, 1);
    }

    #[test]
    fn docker_list_reads_health_from_the_health_field_or_the_status_text() {
        let list = parse_list(Api::Docker, &fixture("docker-docs/containers-json.json")).expect("parses");
        assert_eq!(
            by_name(&list, "web").health,
            Health::Unhealthy,
            "Health field (API 1.52+)"
        );
        assert_eq!(by_name(&list, "proxy").health, Health::Unhealthy, "status text");
        assert_eq!(by_name(&list, "cache").health, Health::Starting);
        assert_eq!(by_name(&list, "batch").exit_code, Some(137));
        assert_eq!(count(&list).other, 1, "restarting");
    }

    #[test]
    fn an_empty_list_and_null_are_no_containers() {
        assert!(parse_list(Api::Libpod, b"[]").expect("[]").is_empty());
        assert!(parse_list(Api::Libpod, b"null").expect("null").is_empty());
        assert_eq!(count(&[]), Counts::default());
    }

    #[test]
    fn truncated_or_misshapen_list_json_is_an_error_not_an_empty_list() {
        for case in [
            "malformed/truncated-list.json",
            "malformed/object-not-list.json",
            "malformed/html.txt",
        ] {
            let body = fixture(case);
            assert!(parse_list(Api::Libpod, &body).is_err(), "{case} (libpod)");
            assert!(parse_list(Api::Docker, &body).is_err(), "{case} (docker)");
        }
    }

    #[test]
    fn a_stopped_containers_stale_health_is_not_counted_as_unhealthy() {
        let mut list =
            parse_list(Api::Libpod, &fixture("4.3.1/libpod-containers-json.json")).expect("parses");
        for c in &mut list {
            if c.name == "c_sick" {
                c.state = "exited".into();
            }
        }
        assert_eq!(count(&list).unhealthy, 0);
    }

    #[test]
    fn libpod_stats_give_a_sample_per_running_container_and_skip_stopped_ones() {
        let s = parse_libpod_stats(&fixture("4.3.1/libpod-stats-running-and-exited.json")).expect("parses");
        assert_eq!(s.len(), 1, "the exited container comes back with zeros");
        assert!(s[0].0.starts_with("af408eefd95d"));
        assert_eq!(s[0].1.cpu_ns, 34_820_081);
        assert_eq!(s[0].1.memory_bytes, 344_064);
    }

    #[test]
    fn libpod_stats_error_for_an_unknown_container_is_reported() {
        let err =
            parse_libpod_stats(&fixture("4.3.1/libpod-stats-unknown-container.json")).expect_err("error");
        assert!(matches!(err, StatsError::Reported(_)), "{err}");
    }

    #[test]
    fn libpod_stats_in_the_podman_5_shape_parse() {
        let s = parse_libpod_stats(&fixture("5.x-docs/libpod-stats.json")).expect("parses");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1.memory_bytes, 52_428_800);
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_elapsed_time_and_none_on_the_first_sample() {
        let a = Sample {
            cpu_ns: 1_000_000_000,
            clock_ns: 10e9,
            memory_bytes: 0,
        };
        let b = Sample {
            cpu_ns: 1_500_000_000,
            clock_ns: 11e9,
            ..a
        };
        assert_eq!(cpu_percent(None, b), None);
        assert_eq!(cpu_percent(Some(a), b), Some(50.0));
        assert_eq!(cpu_percent(Some(b), a), None, "restart: counters went back");
    }

    #[test]
    fn docker_stats_from_podman_compat_and_docker_give_cpu_clock_and_memory() {
        let p = parse_docker_stats(&fixture("4.3.1/compat-stats.json"))
            .expect("parses")
            .expect("sample");
        assert_eq!(p.cpu_ns, 34_820_081);
        assert_eq!(p.memory_bytes, 344_064);
        assert_eq!(p.clock_ns, 1_591_197_363_190.0 / 2.0);
        let d = parse_docker_stats(&fixture("docker-docs/stats.json"))
            .expect("parses")
            .expect("sample");
        // usage minus inactive_file, as `docker stats` shows it.
        assert_eq!(d.memory_bytes, 6_537_216 - 1_040_384);
    }

    #[test]
    fn docker_stats_of_a_stopped_container_are_no_sample() {
        // Podman 4.3.1 answers 200 with an empty body for an exited container.
        let exited = fixture("4.3.1/compat-stats-exited.json");
        assert_eq!(parse_docker_stats(&exited).expect("empty"), None);
        assert!(parse_docker_stats(b"{\"cpu_stats\":").is_err());
    }

    fn docker(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/docker/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    #[test]
    fn a_real_docker_20_10_list_gives_health_restarting_paused_and_exit_codes() {
        let list = parse_list(Api::Docker, &docker("20.10.24/containers.json")).expect("parses");
        assert_eq!(list.len(), 9);
        assert_eq!(by_name(&list, "n2-unhealthy").health, Health::Unhealthy);
        assert_eq!(by_name(&list, "n2-healthy").health, Health::Healthy);
        assert_eq!(by_name(&list, "n2-restart").state, "restarting");
        assert_eq!(by_name(&list, "n2-paused").state, "paused");
        assert_eq!(by_name(&list, "n2-exit3").exit_code, Some(3));
        assert_eq!(by_name(&list, "n2-oom").exit_code, Some(137));
        assert_eq!(by_name(&list, "n2-run").health, Health::None);
        let c = count(&list);
        assert_eq!(
            (c.running, c.exited, c.paused, c.other, c.unhealthy, c.total),
            (4, 3, 1, 1, 1, 9)
        );
    }

    #[test]
    fn compose_projects_count_their_containers_and_name_what_is_wrong() {
        let list = parse_list(Api::Docker, &docker("20.10.24/containers.json")).expect("parses");
        let p = projects(&list);
        assert_eq!(
            p,
            [Project {
                name: "n2shop".into(),
                total: 2,
                running: 1,
                problems: vec!["n2shop_worker_1: exited (2)".into()],
            }]
        );
    }

    #[test]
    fn a_one_shot_service_that_exited_0_is_not_a_problem_but_unhealthy_or_paused_is() {
        let c = |name: &str, state: &str, health: Health, code: Option<i64>| Container {
            id: name.into(),
            name: name.into(),
            image: String::new(),
            state: state.into(),
            health,
            exit_code: code,
            labels: [(COMPOSE_PROJECT_LABEL.to_string(), "p".to_string())].into(),
        };
        let list = [
            c("migrate", "exited", Health::None, Some(0)),
            c("web", "running", Health::Healthy, None),
            c("db", "running", Health::Unhealthy, None),
            c("cache", "paused", Health::None, None),
        ];
        assert_eq!(projects(&list)[0].problems, ["cache: paused", "db: unhealthy"]);
    }

    #[test]
    fn inspect_tells_an_oom_kill_from_a_plain_exit() {
        let oom = parse_inspect(&docker("20.10.24/inspect-oom.json")).expect("parses");
        assert_eq!(
            oom,
            Inspected {
                oom_killed: true,
                restart_count: 0
            }
        );
        let run = parse_inspect(&docker("20.10.24/inspect-running.json")).expect("parses");
        assert!(!run.oom_killed);
    }

    #[test]
    fn real_docker_20_10_stats_on_cgroup_v1_give_memory_without_cache() {
        let s = parse_docker_stats(&docker("20.10.24/stats-running.json"))
            .expect("parses")
            .expect("a sample");
        assert!(s.memory_bytes > 0 && s.cpu_ns > 0, "{s:?}");
    }
}
