//! The `updates` source: which containers have a newer image waiting, from
//! `podman auto-update --dry-run --format json`, run on its own slow
//! schedule (it asks the registries), or read from the file a host-side
//! timer writes. With `apply_from_ha`, HA's "Apply container updates"
//! button and the update entities' install action run `podman auto-update`,
//! publish progress, then check again.
//!
//! A failed, timed-out or unreadable check is "unknown", never "no
//! updates": the entities go unavailable (or, for one container podman
//! could not check, that entity has no value).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::runner::{Output, Runner};
use super::{UpdatesConfig, UpdatesFrom};
use crate::availability::Latch;
use crate::reading::{key, Kind, Reading, Update, Value};
use crate::source::{wire, SourceContext, SourceState, Spawnable};

/// The source's name: the availability group of its entities.
pub const NAME: &str = "updates";

/// The one command word this source acts on: the button's press and the
/// update entities' install payload.
pub const APPLY_WORD: &str = "apply_container_updates";

/// The check: no pull, no restart.
pub const DRY_RUN_ARGS: &[&str] = &["auto-update", "--dry-run", "--format", "json"];

/// The real thing: pull newer images and restart their units.
pub const APPLY_ARGS: &[&str] = &["auto-update", "--format", "json"];

/// `installed_version` / `latest_version` of an HA update entity: the
/// report says only whether a newer image exists, not its digest.
const CURRENT: &str = "current";
const NEWER: &str = "newer";

/// One container's `Updated` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `false`: the image is the newest.
    UpToDate,
    /// `pending`: a newer image exists (dry run).
    Pending,
    /// `true`: it was just updated (a real run).
    Updated,
    /// `rolled back`: the new image failed to start and the old one runs
    /// again, so the newer image is still not running.
    RolledBack,
    /// `failed`: podman could not check or update it.
    Failed,
    /// A word we do not know: never taken as "no update".
    Unknown,
}

impl Status {
    fn from_word(word: &str) -> Status {
        match word.trim().to_ascii_lowercase().as_str() {
            "false" => Status::UpToDate,
            "pending" => Status::Pending,
            "true" => Status::Updated,
            "rolled back" => Status::RolledBack,
            "failed" => Status::Failed,
            _ => Status::Unknown,
        }
    }

    /// Whether the container does not run its newest image.
    pub fn pending(self) -> bool {
        matches!(self, Status::Pending | Status::RolledBack)
    }

    /// Whether nothing is known about its image.
    pub fn unknown(self) -> bool {
        matches!(self, Status::Failed | Status::Unknown)
    }
}

/// One container in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Container name.
    pub container: String,
    /// Image reference.
    pub image: String,
    /// The systemd unit running it.
    pub unit: String,
    /// What podman said, interpreted.
    pub status: Status,
    /// What podman said, verbatim.
    pub updated: String,
}

/// Why a report could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Not the JSON podman prints.
    #[error("malformed auto-update JSON: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The timer wrote down that podman failed: `{"error": "…"}`.
    #[error("the update check failed: {0}")]
    Reported(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEntry {
    /// The systemd unit.
    #[serde(default)]
    unit: String,
    /// "c30acce3e59a (autoapp)".
    #[serde(default)]
    container: String,
    /// Container name.
    #[serde(default)]
    container_name: String,
    /// Full container id.
    #[serde(default, rename = "ContainerID")]
    container_id: String,
    /// Image reference.
    #[serde(default)]
    image: String,
    /// A string in every podman so far; a bool is taken too.
    #[serde(default)]
    updated: Json,
}

/// Parses `podman auto-update --format json` output (Podman 4.x and 5.x
/// print the same shape). Empty output is no containers set up for
/// auto-update: podman then prints nothing at all.
pub fn parse_report(text: &str) -> Result<Vec<Entry>, ReportError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Json = serde_json::from_str(text)?;
    let items = match value {
        Json::Null => return Ok(Vec::new()),
        Json::Object(o) => {
            return Err(match o.get("error") {
                Some(e) => ReportError::Reported(e.as_str().map_or_else(|| e.to_string(), str::to_string)),
                None => ReportError::Malformed(serde::de::Error::custom(
                    "expected a list of containers, found an object",
                )),
            })
        }
        other => Vec::<RawEntry>::deserialize(other)?,
    };
    Ok(items
        .into_iter()
        .map(|r| {
            let updated = match &r.updated {
                Json::String(s) => s.clone(),
                Json::Bool(b) => b.to_string(),
                _ => String::new(),
            };
            let container = if !r.container_name.is_empty() {
                r.container_name
            } else if let Some(name) = r
                .container
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
            {
                name.to_string()
            } else {
                r.container_id.chars().take(12).collect()
            };
            Entry {
                container,
                image: r.image,
                unit: r.unit,
                status: Status::from_word(&updated),
                updated,
            }
        })
        .collect())
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The containers podman looked at.
    pub entries: Vec<Entry>,
    /// podman finished without an error. When it did not but still printed
    /// a report, the report is used, yet "no updates" cannot be concluded.
    pub complete: bool,
    /// When it ran (file: when the file was written).
    pub at: SystemTime,
}

impl Check {
    /// Containers whose newer image is not running.
    pub fn pending(&self) -> usize {
        self.entries.iter().filter(|e| e.status.pending()).count()
    }

    /// Whether some container's state is not known.
    pub fn uncertain(&self) -> bool {
        !self.complete || self.entries.iter().any(|e| e.status.unknown())
    }
}

fn names<'a>(entries: impl Iterator<Item = &'a Entry>, f: impl Fn(&Entry) -> &str) -> Json {
    let mut v: Vec<&str> = entries.map(f).collect();
    v.sort_unstable();
    v.dedup();
    json!(v)
}

/// What HA gets: the pending count, the "updates available" flag with the
/// pending containers and images as attributes, the apply button when
/// enabled, and one update entity per container podman reported.
///
/// `check` is the last good check (its containers keep their entities);
/// `error` is set while checking fails, and then every value is unknown.
pub fn readings(
    check: Option<&Check>,
    error: Option<&str>,
    apply: bool,
    in_progress: bool,
    last_apply: Option<&Map<String, Json>>,
) -> Vec<Reading> {
    let fresh = check.filter(|_| error.is_none());
    let pending = fresh.map(Check::pending);
    let count = match fresh {
        Some(c) if !c.uncertain() => Value::Int(c.pending() as u64),
        _ => Value::Missing,
    };
    let available = match (fresh, pending) {
        (Some(_), Some(n)) if n > 0 => Value::Bool(true),
        (Some(c), _) if !c.uncertain() => Value::Bool(false),
        _ => Value::Missing,
    };
    let mut attrs = Map::new();
    if let Some(c) = fresh {
        let pend = || c.entries.iter().filter(|e| e.status.pending());
        attrs.insert("containers".into(), names(pend(), |e| &e.container));
        attrs.insert("images".into(), names(pend(), |e| &e.image));
        attrs.insert(
            "unknown".into(),
            names(c.entries.iter().filter(|e| e.status.unknown()), |e| &e.container),
        );
        attrs.insert(
            "checked_at".into(),
            json!(crate::discovery::format_timestamp(c.at)),
        );
    }
    if let Some(e) = error {
        attrs.insert("error".into(), json!(e));
    }
    if let Some(a) = last_apply {
        attrs.insert("last_apply".into(), Json::Object(a.clone()));
    }
    let mut out = vec![
        Reading::new("updates_pending", "Container updates pending", Kind::Count, count).in_group(NAME),
        Reading::new(
            "updates_available",
            "Container updates available",
            Kind::UpdateAvailable,
            available,
        )
        .in_group(NAME)
        .with_attributes(attrs),
    ];
    if apply {
        out.push(
            Reading::new(
                "updates_apply",
                "Apply container updates",
                Kind::Button,
                Value::Missing,
            )
            .in_group(NAME)
            .with_command(APPLY_WORD),
        );
    }
    let mut entries: Vec<&Entry> = check.map(|c| c.entries.iter().collect()).unwrap_or_default();
    entries.sort_by(|a, b| a.container.cmp(&b.container));
    for e in entries {
        let value = match (fresh, e.status) {
            (Some(_), s) if !s.unknown() => Value::Update(Update {
                installed: CURRENT.into(),
                latest: if s.pending() { NEWER } else { CURRENT }.into(),
                title: e.image.clone(),
                in_progress,
                summary: None,
            }),
            _ => Value::Missing,
        };
        let mut r = Reading::new(
            key(&["container", &e.container, "update"]),
            format!("Container {} update", e.container),
            Kind::Update,
            value,
        )
        .in_group(NAME);
        if apply {
            r = r.with_command(APPLY_WORD);
        }
        out.push(r);
    }
    out
}

/// Where the report comes from.
enum Origin {
    /// Run podman.
    Command {
        /// The runner.
        runner: Runner,
        /// Dry-run timeout.
        timeout: Duration,
    },
    /// Read the timer's file.
    File {
        /// The file.
        path: PathBuf,
        /// Older than this is unknown.
        max_age: Duration,
        /// Modification time of the file last read.
        seen: Option<SystemTime>,
    },
}

/// The updates source.
pub struct UpdatesSource {
    /// Where the report comes from.
    origin: Origin,
    /// When to check first, after start.
    first: Duration,
    /// How often to check (command) or look at the file (file).
    period: Duration,
    /// Timeout of an apply run; `None` when applying from HA is off.
    apply: Option<Duration>,
    /// The last good check.
    check: Option<Check>,
    /// Why the latest check failed, while it does.
    error: Option<String>,
    /// Logs a failing check once, and its recovery once.
    health: Latch,
    /// An apply run (and the check after it) is under way.
    in_progress: bool,
    /// The outcome of the last apply run, shown as an attribute.
    last_apply: Option<Map<String, Json>>,
}

impl UpdatesSource {
    /// A source for `cfg`; with source = "file" it looks at the file every
    /// `poll` (the agent's interval).
    pub fn new(cfg: &UpdatesConfig, poll: Duration) -> Self {
        let (origin, first, period) = match cfg.source {
            UpdatesFrom::File => (
                Origin::File {
                    path: cfg.file.clone(),
                    max_age: cfg.file_max_age,
                    seen: None,
                },
                Duration::ZERO,
                poll,
            ),
            UpdatesFrom::Command | UpdatesFrom::Off => (
                Origin::Command {
                    runner: Runner::new(&cfg.command),
                    timeout: cfg.timeout,
                },
                cfg.first_check_after,
                cfg.interval,
            ),
        };
        UpdatesSource {
            origin,
            first,
            period,
            apply: cfg.apply_from_ha.then_some(cfg.apply_timeout),
            check: None,
            error: None,
            health: Latch::default(),
            in_progress: false,
            last_apply: None,
        }
    }

    /// What HA gets now.
    pub fn state(&self) -> SourceState {
        SourceState {
            available: self.error.is_none(),
            readings: readings(
                self.check.as_ref(),
                self.error.as_deref(),
                self.apply.is_some(),
                self.in_progress,
                self.last_apply.as_ref(),
            ),
        }
    }

    /// Checks once (or looks at the file) and records the result, logging
    /// a failure once and its recovery once.
    pub async fn refresh(&mut self) {
        let result = match &mut self.origin {
            Origin::Command { runner, timeout } => Some(check_command(runner, *timeout).await),
            Origin::File { path, max_age, seen } => check_file(path, *max_age, seen, self.error.is_some()),
        };
        match result {
            None => {}
            Some(Ok(check)) => {
                let was = self.error.take().unwrap_or_default();
                if self.health.recover() {
                    tracing::info!(previous_error = %was, "container update check works again");
                }
                tracing::info!(
                    containers = check.entries.len(),
                    pending = check.pending(),
                    complete = check.complete,
                    "container update check"
                );
                self.check = Some(check);
            }
            Some(Err(e)) => {
                if self.health.fail() {
                    tracing::warn!(error = %e, "container update check failed; update entities are unavailable until it works");
                }
                self.error = Some(e);
            }
        }
    }

    /// Whether `word` is this source's to act on; anything else is logged
    /// and ignored.
    fn accepts(&self, word: &str) -> bool {
        if word == APPLY_WORD && self.apply.is_some() {
            return true;
        }
        tracing::warn!(
            command = %word.chars().take(64).collect::<String>(),
            "ignoring a command the updates source does not offer"
        );
        false
    }

    /// Runs `podman auto-update` and records the outcome.
    async fn apply_updates(&mut self) {
        let (Origin::Command { runner, .. }, Some(timeout)) = (&self.origin, self.apply) else {
            return;
        };
        tracing::info!(program = %runner.program().display(), "applying container updates (podman auto-update)");
        let mut outcome = Map::new();
        outcome.insert(
            "at".into(),
            json!(crate::discovery::format_timestamp(SystemTime::now())),
        );
        match runner.run(APPLY_ARGS, timeout).await {
            Ok(out) => {
                let entries = parse_report(&out.stdout).unwrap_or_default();
                let with = |s: Status| names(entries.iter().filter(|e| e.status == s), |e| &e.container);
                outcome.insert("ok".into(), json!(out.status.success()));
                outcome.insert("updated".into(), with(Status::Updated));
                outcome.insert("failed".into(), with(Status::Failed));
                outcome.insert("rolled_back".into(), with(Status::RolledBack));
                if out.status.success() {
                    tracing::info!(
                        updated = %outcome["updated"],
                        failed = %outcome["failed"],
                        rolled_back = %outcome["rolled_back"],
                        "container updates applied"
                    );
                } else {
                    let error = exit_error(runner, APPLY_ARGS, &out);
                    tracing::warn!(%error, updated = %outcome["updated"], "applying container updates failed");
                    outcome.insert("error".into(), json!(error));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "applying container updates failed");
                outcome.insert("ok".into(), json!(false));
                outcome.insert("error".into(), json!(e.to_string()));
            }
        }
        self.last_apply = Some(outcome);
    }

    /// Publishes progress, applies, checks again, publishes the outcome.
    async fn apply_and_recheck(&mut self, ctx: &mut SourceContext) {
        self.in_progress = true;
        ctx.publish(self.state(), true);
        self.apply_updates().await;
        self.refresh().await;
        self.in_progress = false;
        // Presses that arrived during the run are answered by it.
        while let Ok(word) = ctx.commands.try_recv() {
            tracing::info!(command = %word.chars().take(64).collect::<String>(), "ignored: an update run just finished");
        }
        ctx.publish(self.state(), true);
    }

    /// Checks on schedule and answers commands, until dropped.
    pub async fn run(mut self, mut ctx: SourceContext) {
        // "Not checked yet" is an answer: the agent need not hold its first
        // discovery for the first check, which is minutes away.
        ctx.publish(self.state(), false);
        let mut next = Instant::now() + self.first;
        let mut commands_open = true;
        loop {
            tokio::select! {
                _ = sleep_until(next) => {
                    self.refresh().await;
                    ctx.publish(self.state(), true);
                    next = Instant::now() + self.period;
                }
                word = ctx.commands.recv(), if commands_open => match word {
                    Some(word) if self.accepts(&word) => {
                        self.apply_and_recheck(&mut ctx).await;
                        next = Instant::now() + self.period;
                    }
                    Some(_) => {}
                    None => commands_open = false,
                },
            }
        }
    }
}

/// "podman auto-update --dry-run … exited with 125: Error: …".
fn exit_error(runner: &Runner, args: &[&str], out: &Output) -> String {
    let code = out
        .status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| c.to_string());
    format!(
        "{} {} exited with {code}: {}",
        runner.program().display(),
        args.join(" "),
        out.error_line()
    )
}

/// Runs the dry run. podman prints a report and exits non-zero when some
/// container failed: the report is used, marked incomplete.
async fn check_command(runner: &Runner, timeout: Duration) -> Result<Check, String> {
    let out = runner
        .run(DRY_RUN_ARGS, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let success = out.status.success();
    match parse_report(&out.stdout) {
        Ok(entries) if success || !entries.is_empty() => Ok(Check {
            entries,
            complete: success,
            at: SystemTime::now(),
        }),
        Err(e) if success => Err(format!(
            "{} {}: {e}",
            runner.program().display(),
            DRY_RUN_ARGS.join(" ")
        )),
        _ => Err(exit_error(runner, DRY_RUN_ARGS, &out)),
    }
}

/// Looks at the timer's file: `None` when it is unchanged since the last
/// good read (and still fresh). Plain blocking reads: a few hundred bytes,
/// where tokio's fs would start a blocking thread pool for them.
fn check_file(
    path: &std::path::Path,
    max_age: Duration,
    seen: &mut Option<SystemTime>,
    failing: bool,
) -> Option<Result<Check, String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(Err(format!(
                "{} does not exist (yet): host2mqtt-updates.timer on the host writes it",
                path.display()
            )))
        }
        Err(e) => return Some(Err(format!("cannot read {}: {e}", path.display()))),
    };
    let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
    if age > max_age {
        return Some(Err(format!(
            "{} was written {} ago, longer than file_max_age ({}): is host2mqtt-updates.timer running?",
            path.display(),
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            humantime::format_duration(max_age)
        )));
    }
    if *seen == Some(mtime) && !failing {
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Some(Err(format!("cannot read {}: {e}", path.display()))),
    };
    Some(match parse_report(&text) {
        Ok(entries) => {
            *seen = Some(mtime);
            Ok(Check {
                entries,
                complete: true,
                at: mtime,
            })
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    })
}

/// The source wired for the agent; `poll` is the agent's interval.
pub fn spawnable(cfg: &UpdatesConfig, poll: Duration, poke: mpsc::Sender<()>) -> Spawnable {
    let source = UpdatesSource::new(cfg, poll);
    let initial = source.state();
    wire(NAME, initial, poke, move |ctx| source.run(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let full = format!("{}/tests/fixtures/autoupdate/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    fn check(name: &str) -> Check {
        Check {
            entries: parse_report(&fixture(name)).expect("parses"),
            complete: true,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn get<'a>(r: &'a [Reading], k: &str) -> &'a Reading {
        r.iter().find(|r| r.key == k).unwrap_or_else(|| panic!("no {k}"))
    }

    #[test]
    fn the_podman_4_3_report_gives_one_pending_update() {
        let entries = parse_report(&fixture("4.3.1-pending.json")).expect("parses");
        assert_eq!(
            entries,
            vec![Entry {
                container: "autoapp".into(),
                image: "127.0.0.1:5000/app:latest".into(),
                unit: "container-autoapp.service".into(),
                status: Status::Pending,
                updated: "pending".into(),
            }]
        );
    }

    #[test]
    fn the_podman_5_report_shape_parses_the_same() {
        let entries = parse_report(&fixture("5.x-docs-mixed.json")).expect("parses");
        let status: Vec<_> = entries.iter().map(|e| (e.container.as_str(), e.status)).collect();
        assert_eq!(
            status,
            [
                ("systemd-web", Status::Pending),
                ("systemd-db", Status::UpToDate),
                ("systemd-cache", Status::Failed),
                ("systemd-proxy", Status::RolledBack),
            ]
        );
    }

    #[test]
    fn no_auto_update_containers_is_empty_output_and_zero_pending() {
        assert!(parse_report("").expect("empty").is_empty());
        assert!(parse_report("null\n").expect("null").is_empty());
        let c = Check {
            entries: vec![],
            complete: true,
            at: SystemTime::UNIX_EPOCH,
        };
        let r = readings(Some(&c), None, false, false, None);
        assert_eq!(get(&r, "updates_pending").value, Value::Int(0));
        assert_eq!(get(&r, "updates_available").value, Value::Bool(false));
    }

    #[test]
    fn garbage_truncated_json_and_a_recorded_error_are_errors_not_zero_updates() {
        assert!(matches!(
            parse_report(&fixture("garbage.txt")),
            Err(ReportError::Malformed(_))
        ));
        assert!(matches!(
            parse_report(&fixture("truncated.json")),
            Err(ReportError::Malformed(_))
        ));
        match parse_report(&fixture("timer-error.json")) {
            Err(ReportError::Reported(e)) => assert!(e.contains("exited with 125"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(parse_report("{\"x\": 1}").is_err());
    }

    #[test]
    fn a_pending_update_shows_in_count_flag_attributes_and_its_update_entity() {
        let c = check("4.3.1-pending.json");
        let r = readings(Some(&c), None, false, false, None);
        assert_eq!(get(&r, "updates_pending").value, Value::Int(1));
        assert_eq!(get(&r, "updates_available").value, Value::Bool(true));
        let attrs = get(&r, "updates_available").attributes.clone().expect("attrs");
        assert_eq!(attrs["containers"], json!(["autoapp"]));
        assert_eq!(attrs["images"], json!(["127.0.0.1:5000/app:latest"]));
        let u = get(&r, "container_autoapp_update");
        assert_eq!(u.kind, Kind::Update);
        assert_eq!(
            u.value,
            Value::Update(Update {
                installed: "current".into(),
                latest: "newer".into(),
                title: "127.0.0.1:5000/app:latest".into(),
                in_progress: false,
                summary: None,
            })
        );
        assert_eq!(u.command, None, "no install action unless apply_from_ha");
        assert!(r.iter().all(|r| r.key != "updates_apply"));
    }

    #[test]
    fn a_failed_container_makes_the_count_unknown_but_a_pending_one_still_shows() {
        let c = check("5.x-docs-mixed.json");
        let r = readings(Some(&c), None, false, false, None);
        assert_eq!(get(&r, "updates_pending").value, Value::Missing);
        assert_eq!(get(&r, "updates_available").value, Value::Bool(true));
        assert_eq!(get(&r, "container_systemd_cache_update").value, Value::Missing);
        assert!(matches!(
            &get(&r, "container_systemd_proxy_update").value,
            Value::Update(u) if u.latest == "newer"
        ));
        let attrs = get(&r, "updates_available").attributes.clone().expect("attrs");
        assert_eq!(attrs["unknown"], json!(["systemd-cache"]));
    }

    #[test]
    fn only_unknown_containers_and_nothing_pending_is_unknown_not_no_updates() {
        let c = check("4.3.1-failed.json");
        let r = readings(Some(&c), None, false, false, None);
        assert_eq!(get(&r, "updates_pending").value, Value::Missing);
        assert_eq!(get(&r, "updates_available").value, Value::Missing);
        let incomplete = Check {
            entries: vec![],
            complete: false,
            at: SystemTime::UNIX_EPOCH,
        };
        let r = readings(Some(&incomplete), None, false, false, None);
        assert_eq!(get(&r, "updates_available").value, Value::Missing);
    }

    #[test]
    fn a_failing_check_keeps_the_entities_without_values_and_says_why() {
        let c = check("4.3.1-pending.json");
        let good = readings(Some(&c), None, true, false, None);
        let bad = readings(Some(&c), Some("podman: killed after 5m"), true, false, None);
        let keys = |r: &[Reading]| r.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&good), keys(&bad), "same entities");
        assert!(bad.iter().all(|r| r.value == Value::Missing));
        let attrs = get(&bad, "updates_available").attributes.clone().expect("attrs");
        assert_eq!(attrs["error"], "podman: killed after 5m");
    }

    #[test]
    fn with_apply_from_ha_there_is_a_button_and_installable_updates_with_one_word() {
        let c = check("4.3.1-pending.json");
        let r = readings(Some(&c), None, true, true, None);
        let button = get(&r, "updates_apply");
        assert_eq!(button.kind, Kind::Button);
        assert_eq!(button.name, "Apply container updates");
        assert_eq!(button.command.as_deref(), Some(APPLY_WORD));
        let u = get(&r, "container_autoapp_update");
        assert_eq!(u.command.as_deref(), Some(APPLY_WORD));
        assert!(matches!(&u.value, Value::Update(u) if u.in_progress));
    }

    #[test]
    fn a_source_acts_only_on_its_own_word_and_only_when_applying_is_on() {
        let on = UpdatesSource::new(
            &UpdatesConfig {
                source: UpdatesFrom::Command,
                apply_from_ha: true,
                ..UpdatesConfig::default()
            },
            Duration::from_secs(30),
        );
        assert!(on.accepts(APPLY_WORD));
        assert!(!on.accepts("rm -rf /"));
        assert!(!on.accepts("apply_container_updates "));
        let off = UpdatesSource::new(
            &UpdatesConfig {
                source: UpdatesFrom::Command,
                ..UpdatesConfig::default()
            },
            Duration::from_secs(30),
        );
        assert!(!off.accepts(APPLY_WORD));
    }

    #[test]
    fn before_the_first_check_the_values_are_unknown_but_available() {
        let s = UpdatesSource::new(
            &UpdatesConfig {
                source: UpdatesFrom::Command,
                ..UpdatesConfig::default()
            },
            Duration::from_secs(30),
        );
        let state = s.state();
        assert!(state.available);
        assert_eq!(state.readings.len(), 2);
        assert!(state.readings.iter().all(|r| r.value == Value::Missing));
    }
}
