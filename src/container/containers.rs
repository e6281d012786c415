//! The `containers` source: once per agent interval, one list call for the
//! host-level counts, and one-shot stats for the opted-in running
//! containers. Publishes `available = false` (entities kept, values
//! missing) while the engine does not answer, logging that once and its
//! recovery once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// How often the source looks for a container engine socket while there
/// is none.
const ABSENT_RECHECK: Duration = Duration::from_secs(60);

use super::engine::{default_sockets, Api, Connection, Engine, EngineError};
use super::model::{
    count, cpu_percent, parse_docker_stats, parse_inspect, parse_libpod_stats, parse_list, projects,
    Container, Counts, Inspected, Project, Sample, STATES,
};
use super::{ApiChoice, ContainersConfig};
use crate::availability::{without_values, Latch};
use crate::reading::{key, Kind, Reading, Value};
use crate::source::{wire, SourceContext, SourceState, Spawnable};

/// The source's name: the availability group of its entities
/// (`avail.containers` in the state JSON).
pub const NAME: &str = "containers";

/// Which containers get entities of their own.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Name globs.
    globs: Vec<glob::Pattern>,
    /// Label name and, if given, the value it must have.
    label: Option<(String, Option<String>)>,
}

impl Selection {
    /// From `include` and `label` (validated already; a bad glob is skipped).
    pub fn new(include: &[String], label: &str) -> Self {
        let label = label.trim();
        Selection {
            globs: include
                .iter()
                .filter_map(|g| glob::Pattern::new(g).ok())
                .collect(),
            label: (!label.is_empty()).then(|| match label.split_once('=') {
                Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                None => (label.to_string(), None),
            }),
        }
    }

    /// Whether `c` gets per-container entities.
    pub fn wants(&self, c: &Container) -> bool {
        self.globs.iter().any(|g| g.matches(&c.name))
            || self
                .label
                .as_ref()
                .is_some_and(|(k, v)| match (c.labels.get(k), v) {
                    (Some(have), Some(want)) => have == want,
                    (Some(_), None) => true,
                    (None, _) => false,
                })
    }
}

/// Why a cycle produced no fresh readings.
enum Failure {
    /// No engine socket at any place looked at.
    Absent,
    /// An engine is there but did not answer usably.
    Engine(EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

/// The container engine source.
pub struct ContainersSource {
    /// The configured socket, if any.
    socket: Option<PathBuf>,
    /// Where to look when none is configured.
    candidates: Vec<PathBuf>,
    /// The API the config asks for.
    choice: ApiChoice,
    /// Per-request timeout.
    timeout: Duration,
    /// Whether to fetch CPU and memory of the opted-in containers.
    stats: bool,
    /// Which containers get entities of their own.
    selection: Selection,
    /// Entities per Compose project.
    compose: bool,
    /// The engine found, until it stops answering.
    engine: Option<Engine>,
    /// An engine is (or was) here: from then on the entities exist, and
    /// its absence is a failure rather than "nothing here".
    present: bool,
    /// The failure has been logged; cleared (and logged) on recovery.
    failing: Latch,
    /// The entities of the last good cycle, shown without values while failing.
    last: Vec<Reading>,
    /// The previous stats sample per container id, for CPU %.
    samples: HashMap<String, Sample>,
}

impl ContainersSource {
    /// A source for `cfg`, looking in the default places when no socket is set.
    pub fn new(cfg: &ContainersConfig) -> Self {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        let uid = rustix::process::getuid().as_raw();
        let socket = (!cfg.socket.as_os_str().is_empty()).then(|| cfg.socket.clone());
        ContainersSource {
            present: socket.is_some(),
            socket,
            candidates: default_sockets(xdg.as_deref(), uid),
            choice: cfg.api,
            timeout: cfg.timeout,
            stats: cfg.stats,
            selection: Selection::new(&cfg.include, &cfg.label),
            compose: cfg.compose,
            engine: None,
            failing: Latch::default(),
            last: Vec::new(),
            samples: HashMap::new(),
        }
    }

    /// What the agent shows before the first cycle: the host-level
    /// entities, unavailable, when an engine socket is configured or
    /// exists; nothing when there is none (no entities that would vanish).
    pub fn initial_state(&mut self) -> SourceState {
        if !self.present && self.candidates.iter().any(|p| p.exists()) {
            self.present = true;
        }
        SourceState {
            available: false,
            readings: if self.present {
                host_readings(None)
            } else {
                Vec::new()
            },
        }
    }

    /// One cycle: ask the engine, build the readings.
    pub async fn cycle(&mut self) -> SourceState {
        let started = Instant::now();
        let result = self.poll().await;
        let state = match result {
            Ok(readings) => {
                if self.failing.recover() {
                    tracing::info!(socket = %self.socket_shown(), "container engine answering again");
                }
                self.present = true;
                self.last.clone_from(&readings);
                SourceState {
                    available: true,
                    readings,
                }
            }
            // Nothing here is nothing broken: available, no entities. (Not
            // the initial state, so `check` sees the source has answered.)
            Err(Failure::Absent) if !self.present => SourceState {
                available: true,
                readings: Vec::new(),
            },
            Err(failure) => {
                self.engine = None;
                self.samples.clear();
                if self.failing.fail() {
                    let error = match failure {
                        Failure::Absent => format!(
                            "no container engine socket at any of {}",
                            self.candidates
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        Failure::Engine(EngineError::Connect { socket, source })
                            if source.kind() == std::io::ErrorKind::PermissionDenied =>
                        {
                            format!(
                                "{}: permission denied: this user may not use the socket (Docker: the docker group; \
                                 rootful Podman: root only); set containers.socket to one it may use, or \
                                 containers.enabled = false",
                                socket.display()
                            )
                        }
                        Failure::Engine(e) => e.to_string(),
                    };
                    tracing::warn!(%error, "container engine not answering; container entities are unavailable until it does");
                }
                self.unavailable()
            }
        };
        tracing::debug!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            readings = state.readings.len(),
            available = state.available,
            "containers cycle"
        );
        state
    }

    fn socket_shown(&self) -> String {
        self.engine
            .as_ref()
            .map(|e| &e.socket)
            .or(self.socket.as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    /// The last entities, or the host-level ones, without values.
    fn unavailable(&self) -> SourceState {
        let readings = if self.last.is_empty() {
            host_readings(None)
        } else {
            without_values(&self.last)
        };
        SourceState {
            available: false,
            readings,
        }
    }

    /// Finds the engine: the configured socket, else the first default
    /// place that answers.
    async fn locate(&self) -> Result<Engine, Failure> {
        if let Some(socket) = &self.socket {
            return Ok(Engine::probe(socket, self.choice, self.timeout).await?);
        }
        let mut first_error = None;
        for socket in &self.candidates {
            match Engine::probe(socket, self.choice, self.timeout).await {
                Ok(engine) => return Ok(engine),
                Err(EngineError::Missing { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.map_or(Failure::Absent, Failure::Engine))
    }

    async fn poll(&mut self) -> Result<Vec<Reading>, Failure> {
        let engine = match &self.engine {
            Some(e) => e.clone(),
            None => {
                let e = self.locate().await?;
                tracing::info!(socket = %e.socket.display(), api = e.api.name(), "container engine found");
                self.engine = Some(e.clone());
                e
            }
        };
        let mut conn = Connection::open(&engine.socket, self.timeout).await?;
        let path = engine.api.list_path();
        let body = conn.get(path).await?.body;
        let containers =
            parse_list(engine.api, &body).map_err(|e| EngineError::json(&engine.socket, path, e))?;
        let mut selected: Vec<&Container> = containers.iter().filter(|c| self.selection.wants(c)).collect();
        selected.sort_by(|a, b| a.name.cmp(&b.name));
        let samples = if self.stats {
            fetch_stats(&mut conn, engine.api, &selected, self.timeout).await
        } else {
            HashMap::new()
        };
        let inspected = fetch_inspect(&mut conn, engine.api, &selected).await;
        let mut readings = container_readings(
            count(&containers),
            &selected,
            &self.samples,
            &samples,
            self.stats,
            &inspected,
        );
        if self.compose {
            readings.extend(project_readings(&projects(&containers)));
        }
        self.samples = samples;
        Ok(readings)
    }

    /// Runs a cycle every `interval` and publishes it, until dropped. With
    /// no socket anywhere (and none configured) it looks again only every
    /// [`ABSENT_RECHECK`]: two failing stats and a wake-up of their own each
    /// cycle were a tenth of a quiet cycle's cost.
    pub async fn run(mut self, ctx: SourceContext, interval: Duration) {
        // The first cycle at once (the agent waits for it), then on the
        // agent's ticks, so each shares their wake-up.
        loop {
            let state = self.cycle().await;
            let absent = !self.present && state.readings.is_empty();
            ctx.publish(state, false);
            let every = if absent {
                interval.max(ABSENT_RECHECK)
            } else {
                interval
            };
            crate::source::sleep_on_grid(every).await;
        }
    }
}

/// The source wired for the agent.
pub fn spawnable(cfg: &ContainersConfig, interval: Duration, poke: mpsc::Sender<()>) -> Spawnable {
    let mut source = ContainersSource::new(cfg);
    let initial = source.initial_state();
    wire(NAME, initial, poke, move |ctx| source.run(ctx, interval))
}

/// Container ids are hex; anything else is not put into a URL.
fn is_plain_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// One-shot stats of the selected containers that are up: one call with
/// libpod, one per container with the Docker API, all within `budget`.
/// Failures leave CPU and memory without a value this cycle; they do not
/// make the engine unavailable.
async fn fetch_stats(
    conn: &mut Connection,
    api: Api,
    selected: &[&Container],
    budget: Duration,
) -> HashMap<String, Sample> {
    let mut out = HashMap::new();
    let up: Vec<&Container> = selected
        .iter()
        .copied()
        .filter(|c| c.is_up() && is_plain_id(&c.id))
        .collect();
    if up.is_empty() {
        return out;
    }
    match api {
        Api::Libpod => {
            let mut path = String::from("/v4.0.0/libpod/containers/stats?stream=false");
            for c in &up {
                path.push_str("&containers=");
                path.push_str(&c.id);
            }
            match conn.get(&path).await.map(|r| parse_libpod_stats(&r.body)) {
                Ok(Ok(samples)) => out.extend(samples),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, socket = %conn.socket().display(), "container stats unusable")
                }
                Err(e) => tracing::debug!(error = %e, "container stats failed"),
            }
        }
        Api::Docker => {
            let deadline = Instant::now() + budget;
            for c in up {
                if Instant::now() > deadline {
                    tracing::debug!("container stats took too long; the rest wait for the next cycle");
                    break;
                }
                let path = format!("/containers/{}/stats?stream=false&one-shot=true", c.id);
                match conn.get(&path).await.map(|r| parse_docker_stats(&r.body)) {
                    Ok(Ok(Some(sample))) => {
                        out.insert(c.id.clone(), sample);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, path, "container stats unusable"),
                    Err(e) => {
                        tracing::debug!(error = %e, "container stats failed");
                        break;
                    }
                }
            }
        }
    }
    out
}

/// `State.OOMKilled` and `RestartCount` of the selected containers that
/// stopped, restart or died: one inspect call each, only for those (a
/// running container's OOMKilled is false: the engine clears it on start).
/// A failed call leaves the value unknown this cycle.
async fn fetch_inspect(
    conn: &mut Connection,
    api: Api,
    selected: &[&Container],
) -> HashMap<String, Inspected> {
    let mut out = HashMap::new();
    for c in selected
        .iter()
        .filter(|c| !c.is_up() && c.state != "created" && is_plain_id(&c.id))
    {
        let path = match api {
            Api::Libpod => format!("/v4.0.0/libpod/containers/{}/json", c.id),
            Api::Docker => format!("/containers/{}/json", c.id),
        };
        match conn.get(&path).await.map(|r| parse_inspect(&r.body)) {
            Ok(Ok(i)) => {
                out.insert(c.id.clone(), i);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, path, "container inspect unusable"),
            Err(e) => {
                tracing::debug!(error = %e, "container inspect failed");
                break;
            }
        }
    }
    out
}

/// Per Compose project: how many of its containers run, and a problem
/// sensor that is on while any of them is not as it should be (see
/// [`super::model::projects`]), naming them in its attributes.
pub fn project_readings(projects: &[Project]) -> Vec<Reading> {
    let mut out = Vec::with_capacity(projects.len() * 2);
    for p in projects {
        let name = p.name.as_str();
        let mut attrs = serde_json::Map::new();
        attrs.insert("running".into(), p.running.into());
        attrs.insert("total".into(), p.total.into());
        attrs.insert("problems".into(), p.problems.clone().into());
        out.push(
            Reading::new(
                key(&["compose", name, "running"]),
                format!("Compose {name} running"),
                Kind::Count,
                p.running,
            )
            .in_group(NAME),
        );
        out.push(
            Reading::new(
                key(&["compose", name, "degraded"]),
                format!("Compose {name} degraded"),
                Kind::Problem,
                !p.problems.is_empty(),
            )
            .in_group(NAME)
            .with_attributes(attrs),
        );
    }
    out
}

/// The host-level entities; `None`: known to exist, value unknown.
pub fn host_readings(c: Option<Counts>) -> Vec<Reading> {
    let entry = |k: &'static str, name: &'static str, f: fn(&Counts) -> u64| {
        Reading::new(k, name, Kind::Count, c.as_ref().map(f)).in_group(NAME)
    };
    vec![
        entry("containers_running", "Containers running", |c| c.running),
        entry("containers_exited", "Containers exited", |c| c.exited),
        entry("containers_paused", "Containers paused", |c| c.paused),
        entry("containers_other", "Containers in other states", |c| c.other),
        entry("containers_unhealthy", "Containers unhealthy", |c| c.unhealthy),
        entry("containers_total", "Containers total", |c| c.total),
    ]
}

/// Every reading of one good cycle: the counts, then per selected
/// container (sorted by name) its state, health and, with `stats`, CPU
/// and memory.
pub fn container_readings(
    counts: Counts,
    selected: &[&Container],
    prev: &HashMap<String, Sample>,
    now: &HashMap<String, Sample>,
    stats: bool,
    inspected: &HashMap<String, Inspected>,
) -> Vec<Reading> {
    let mut out = host_readings(Some(counts));
    for c in selected {
        let name = c.name.as_str();
        let mut attrs = serde_json::Map::new();
        attrs.insert("id".into(), c.id.chars().take(12).collect::<String>().into());
        attrs.insert("image".into(), c.image.clone().into());
        if let Some(code) = c.exit_code {
            attrs.insert("exit_code".into(), code.into());
        }
        if let Some(h) = c.health.word() {
            attrs.insert("health".into(), h.into());
        }
        if let Some(i) = inspected.get(&c.id) {
            attrs.insert("restart_count".into(), i.restart_count.into());
        }
        out.push(
            Reading::new(
                key(&["container", name, "state"]),
                format!("Container {name} state"),
                Kind::Enum(STATES),
                c.state.clone(),
            )
            .in_group(NAME)
            .with_attributes(attrs),
        );
        // A health check only means something while the container runs;
        // without one the state is unknown, not "healthy".
        let unhealthy = match c.health.word() {
            Some(h) if c.is_up() => Value::Bool(h == "unhealthy"),
            _ => Value::Missing,
        };
        out.push(
            Reading::new(
                key(&["container", name, "health"]),
                format!("Container {name} health"),
                Kind::Problem,
                unhealthy,
            )
            .in_group(NAME),
        );
        // The kernel's OOM killer ended its last run. A running container
        // is not (the engine clears the flag on start); a stopped one is
        // what its inspect said, unknown when that failed.
        let oom = if c.is_up() {
            Value::Bool(false)
        } else {
            inspected
                .get(&c.id)
                .map_or(Value::Missing, |i| Value::Bool(i.oom_killed))
        };
        out.push(
            Reading::new(
                key(&["container", name, "oom_killed"]),
                format!("Container {name} OOM killed"),
                Kind::Problem,
                oom,
            )
            .in_group(NAME),
        );
        if stats {
            let sample = now.get(&c.id).copied();
            let cpu = sample.and_then(|s| cpu_percent(prev.get(&c.id).copied(), s));
            out.push(
                Reading::new(
                    key(&["container", name, "cpu"]),
                    format!("Container {name} CPU"),
                    Kind::Percent,
                    cpu,
                )
                .in_group(NAME),
            );
            out.push(
                Reading::new(
                    key(&["container", name, "memory"]),
                    format!("Container {name} memory"),
                    Kind::Bytes,
                    sample.map(|s| s.memory_bytes),
                )
                .in_group(NAME),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::model::Health;

    fn container(name: &str, state: &str, health: Health, labels: &[(&str, &str)]) -> Container {
        Container {
            id: format!("{name}0123456789abcdef"),
            name: name.into(),
            image: "localhost/bb:latest".into(),
            state: state.into(),
            health,
            exit_code: (state == "exited").then_some(3),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn containers_are_selected_by_name_glob_or_by_label() {
        let s = Selection::new(&["web*".into()], "host2mqtt.enable=true");
        assert!(s.wants(&container("web1", "running", Health::None, &[])));
        assert!(s.wants(&container(
            "db",
            "running",
            Health::None,
            &[("host2mqtt.enable", "true")]
        )));
        assert!(!s.wants(&container(
            "db",
            "running",
            Health::None,
            &[("host2mqtt.enable", "false")]
        )));
        assert!(!s.wants(&container("db", "running", Health::None, &[])));
        let any_value = Selection::new(&[], "monitor");
        assert!(any_value.wants(&container("x", "running", Health::None, &[("monitor", "")])));
        assert!(!Selection::new(&[], "").wants(&container("x", "running", Health::None, &[("", "")])));
    }

    #[test]
    fn a_selected_container_gets_state_health_cpu_and_memory_entities() {
        let web = container("web", "running", Health::Unhealthy, &[]);
        let id = web.id.clone();
        let prev = HashMap::from([(
            id.clone(),
            Sample {
                cpu_ns: 0,
                clock_ns: 0.0,
                memory_bytes: 0,
            },
        )]);
        let now = HashMap::from([(
            id,
            Sample {
                cpu_ns: 250_000_000,
                clock_ns: 1e9,
                memory_bytes: 1 << 20,
            },
        )]);
        let r = container_readings(
            count(std::slice::from_ref(&web)),
            &[&web],
            &prev,
            &now,
            true,
            &HashMap::new(),
        );
        let get = |k: &str| r.iter().find(|r| r.key == k).unwrap_or_else(|| panic!("{k}"));
        assert_eq!(get("containers_running").value, Value::Int(1));
        assert_eq!(get("containers_unhealthy").value, Value::Int(1));
        assert_eq!(get("container_web_state").value, Value::Text("running".into()));
        assert_eq!(get("container_web_state").kind, Kind::Enum(STATES));
        assert_eq!(get("container_web_health").value, Value::Bool(true));
        assert_eq!(get("container_web_cpu").value, Value::Float(25.0));
        assert_eq!(get("container_web_memory").value, Value::Int(1 << 20));
        assert_eq!(get("container_web_oom_killed").value, Value::Bool(false));
        assert!(r.iter().all(|r| r.group == Some(NAME)));
    }

    #[test]
    fn an_exited_container_has_an_exit_code_attribute_and_unknown_health_and_cpu() {
        let job = container("job", "exited", Health::Healthy, &[]);
        let r = container_readings(
            count(std::slice::from_ref(&job)),
            &[&job],
            &HashMap::new(),
            &HashMap::new(),
            true,
            &HashMap::from([(
                job.id.clone(),
                Inspected {
                    oom_killed: true,
                    restart_count: 2,
                },
            )]),
        );
        let get = |k: &str| r.iter().find(|r| r.key == k).unwrap_or_else(|| panic!("{k}"));
        let attrs = get("container_job_state").attributes.clone().expect("attributes");
        assert_eq!(attrs["exit_code"], 3);
        assert_eq!(get("container_job_health").value, Value::Missing, "stale health");
        assert_eq!(get("container_job_cpu").value, Value::Missing);
        assert_eq!(get("container_job_memory").value, Value::Missing);
        assert_eq!(get("container_job_oom_killed").value, Value::Bool(true));
        assert_eq!(get("container_job_oom_killed").kind, Kind::Problem);
        assert_eq!(attrs["restart_count"], 2);
    }

    #[test]
    fn the_host_level_entities_have_stable_keys_and_names() {
        let r = host_readings(None);
        let keys: Vec<_> = r.iter().map(|r| (r.key.as_str(), r.name.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("containers_running", "Containers running"),
                ("containers_exited", "Containers exited"),
                ("containers_paused", "Containers paused"),
                ("containers_other", "Containers in other states"),
                ("containers_unhealthy", "Containers unhealthy"),
                ("containers_total", "Containers total"),
            ]
        );
        assert!(r
            .iter()
            .all(|r| r.value == Value::Missing && r.kind == Kind::Count));
    }

    #[tokio::test]
    async fn no_engine_anywhere_means_no_entities_and_no_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = ContainersSource::new(&ContainersConfig::default());
        s.candidates = vec![dir.path().join("podman.sock"), dir.path().join("docker.sock")];
        assert_eq!(s.initial_state(), SourceState::default());
        let state = s.cycle().await;
        assert!(state.readings.is_empty());
        assert!(state.available, "nothing here is nothing broken");
        assert!(!s.failing.is_failing());
    }

    #[tokio::test]
    async fn a_configured_socket_that_is_not_there_keeps_the_entities_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = ContainersConfig {
            socket: dir.path().join("podman.sock"),
            ..ContainersConfig::default()
        };
        let mut s = ContainersSource::new(&cfg);
        let initial = s.initial_state();
        assert!(!initial.available);
        assert_eq!(initial.readings.len(), 6);
        let state = s.cycle().await;
        assert!(!state.available);
        assert_eq!(state.readings, host_readings(None));
        assert!(s.failing.is_failing(), "logged once");
        s.cycle().await;
        assert!(s.failing.is_failing());
    }

    #[test]
    fn a_compose_project_has_a_running_count_and_a_degraded_problem_naming_the_culprits() {
        let p = Project {
            name: "shop".into(),
            total: 3,
            running: 2,
            problems: vec!["shop_worker_1: exited (2)".into()],
        };
        let r = project_readings(&[p]);
        let keys: Vec<_> = r.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["compose_shop_running", "compose_shop_degraded"]);
        assert_eq!(r[0].value, Value::Int(2));
        assert_eq!(r[1].value, Value::Bool(true));
        assert_eq!(r[1].kind, Kind::Problem);
        let attrs = r[1].attributes.clone().expect("attrs");
        assert_eq!(
            attrs["problems"],
            serde_json::json!(["shop_worker_1: exited (2)"])
        );
        assert_eq!(attrs["total"], 3);
    }
}
