//! The `host2mqtt` command: `run`, `check`, `purge`, `dashboard`.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::sync::mpsc;

use host2mqtt::agent::{self, Agent};
use host2mqtt::collector::Tick;
use host2mqtt::discovery;
use host2mqtt::error::ConfigError;
use host2mqtt::reading::Reading;
use host2mqtt::session::{Session, SessionEvent, SessionOptions};
use host2mqtt::wiring::{self, Config};

/// How long `run` and `check` wait for the sources' first answers (a
/// source that has not answered by then shows as unavailable).
const SOURCE_SETTLE: Duration = Duration::from_secs(10);

/// sysexits' EX_CONFIG: systemd units use it to not restart on a bad config.
const EX_CONFIG: u8 = 78;

/// Where the config is looked for when neither --config nor
/// HOST2MQTT_CONFIG names one (only used when it exists).
const DEFAULT_CONFIG: &str = "/etc/host2mqtt/host2mqtt.toml";

/// The command line: `[-c FILE] <run | check [--json] | purge | dashboard
/// [--wait DURATION] | help [COMMAND]>`, `-h`, `-V`. Parsed by hand, with
/// clap's texts and exit codes (2 for a usage error): clap's parser and
/// help renderer were about 120 KB of a binary that runs one command.
#[derive(Debug, PartialEq)]
struct Cli {
    /// `-c`/`--config`: the config file.
    config: Option<PathBuf>,
    command: Command,
}

#[derive(Debug, PartialEq)]
enum Command {
    /// Run the agent: collect every interval and publish to the broker.
    Run,
    /// Collect once and show what would be published.
    Check {
        /// Print the exact topics and payloads as JSON.
        json: bool,
    },
    /// Remove this host's device from Home Assistant.
    Purge,
    /// Print a Lovelace dashboard of every host2mqtt host on the broker.
    Dashboard {
        /// How long to collect retained discovery after connecting.
        wait: Duration,
    },
}

/// What to print instead of running, and the exit code: help, the version
/// or a usage error (2, on stderr, like clap's).
#[derive(Debug, PartialEq)]
struct Exit {
    text: String,
    code: u8,
}

const ABOUT: &str = "Publish this host's metrics to MQTT as a Home Assistant device";
const CONFIG_HELP: &str = "  -c, --config <CONFIG>  Config file (TOML). Default: $HOST2MQTT_CONFIG, else /etc/host2mqtt/host2mqtt.toml if it exists\n";
const TRY_HELP: &str = "For more information, try '--help'.\n";

/// The subcommands: name, about, their own options' help lines.
const COMMANDS: [(&str, &str, &str); 4] = [
    ("run", "Run the agent: collect every interval and publish to the broker", ""),
    (
        "check",
        "Collect once (twice, a second apart, for rates) and show what would be published. Needs no broker",
        "      --json             Print the exact topics and payloads `run` would publish, as JSON\n",
    ),
    (
        "purge",
        "Remove this host's device from Home Assistant (empty retained discovery, info and availability)",
        "",
    ),
    (
        "dashboard",
        "Print a Lovelace dashboard of every host2mqtt host on the broker (from the retained discovery), for HA's raw configuration editor",
        "      --wait <WAIT>      How long to collect retained discovery after connecting [default: 3s]\n",
    ),
];

/// `--help` of the whole command.
fn main_help() -> String {
    let mut s = format!("{ABOUT}\n\nUsage: host2mqtt [OPTIONS] <COMMAND>\n\nCommands:\n");
    for (name, about, _) in COMMANDS {
        s += &format!("  {name:<9}  {about}\n");
    }
    s += "  help       Print this message or the help of the given subcommand(s)\n\nOptions:\n";
    s += CONFIG_HELP;
    s += "  -h, --help             Print help\n  -V, --version          Print version\n";
    s
}

/// `--help` of one subcommand (`help` included).
fn command_help(name: &str) -> Option<String> {
    if name == "help" {
        return Some(
            "Print this message or the help of the given subcommand(s)\n\nUsage: host2mqtt help [COMMAND]...\n\nArguments:\n  [COMMAND]...  Print help for the subcommand(s)\n"
                .into(),
        );
    }
    let (_, about, options) = COMMANDS.iter().find(|c| c.0 == name)?;
    Some(format!(
        "{about}\n\nUsage: host2mqtt {name} [OPTIONS]\n\nOptions:\n{CONFIG_HELP}{options}  -h, --help             Print help\n"
    ))
}

/// A usage error as clap words it; `usage` is the subcommand's, if any.
fn usage_error(message: &str, command: Option<&str>) -> Exit {
    let usage = match command {
        Some(c) => format!("Usage: host2mqtt {c} [OPTIONS]\n\n"),
        None => "Usage: host2mqtt [OPTIONS] <COMMAND>\n\n".into(),
    };
    Exit {
        text: format!("error: {message}\n\n{usage}{TRY_HELP}"),
        code: 2,
    }
}

/// A usage error without the usage line (a missing or bad value).
fn value_error(message: &str) -> Exit {
    Exit {
        text: format!("error: {message}\n\n{TRY_HELP}"),
        code: 2,
    }
}

fn printed(text: String) -> Exit {
    Exit { text, code: 0 }
}

/// Parses the arguments after the program name.
fn parse_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, Exit> {
    let mut args = args.into_iter();
    let mut config: Option<PathBuf> = None;
    let mut command: Option<&'static str> = None;
    let mut json = false;
    let mut wait: Option<Duration> = None;
    let mut help_for: Option<Vec<String>> = None;
    while let Some(arg) = args.next() {
        // A value may be any bytes (a path); flags and names are UTF-8.
        let text = arg.to_str().unwrap_or("\u{fffd}").to_string();
        if let Some(topics) = help_for.as_mut() {
            topics.push(text);
            continue;
        }
        // `--name=value`, `-cvalue`, `-c=value`; the value keeps its bytes.
        let bytes = arg.as_bytes();
        let (flag, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(at) if text.starts_with("--") => (
                text.get(..at).unwrap_or_default().to_string(),
                bytes.get(at + 1..),
            ),
            _ if bytes.len() > 2 && bytes.starts_with(b"-c") => {
                let v = &bytes[2..];
                ("-c".to_string(), Some(v.strip_prefix(b"=").unwrap_or(v)))
            }
            _ => (text.clone(), None),
        };
        let inline = inline.map(|v| std::ffi::OsString::from_vec(v.to_vec()));
        let mut value = |name: &str| -> Result<std::ffi::OsString, Exit> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            match args.next() {
                Some(v) if !(v.to_string_lossy().starts_with('-') && v.len() > 1) => Ok(v),
                _ => Err(value_error(&format!(
                    "a value is required for '{name}' but none was supplied"
                ))),
            }
        };
        match flag.as_str() {
            "-c" | "--config" => {
                if config.is_some() {
                    return Err(usage_error(
                        "the argument '--config <CONFIG>' cannot be used multiple times",
                        command,
                    ));
                }
                config = Some(PathBuf::from(value("--config <CONFIG>")?));
            }
            "-h" | "--help" => {
                return Err(printed(match command {
                    Some(c) => command_help(c).unwrap_or_else(main_help),
                    None => main_help(),
                }))
            }
            "-V" | "--version" if command.is_none() => {
                return Err(printed(format!("host2mqtt {}\n", env!("CARGO_PKG_VERSION"))))
            }
            "--json" if command == Some("check") => {
                if json {
                    return Err(usage_error(
                        "the argument '--json' cannot be used multiple times",
                        command,
                    ));
                }
                json = true;
            }
            "--wait" if command == Some("dashboard") => {
                if wait.is_some() {
                    return Err(usage_error(
                        "the argument '--wait <WAIT>' cannot be used multiple times",
                        command,
                    ));
                }
                let v = value("--wait <WAIT>")?;
                let v = v.to_string_lossy();
                wait =
                    Some(humantime::parse_duration(&v).map_err(|e| {
                        value_error(&format!("invalid value '{v}' for '--wait <WAIT>': {e}"))
                    })?);
            }
            "help" if command.is_none() => help_for = Some(Vec::new()),
            name if command.is_none() && !name.starts_with('-') => {
                let Some((known, _, _)) = COMMANDS.iter().find(|c| c.0 == name) else {
                    return Err(usage_error(&format!("unrecognized subcommand '{name}'"), None));
                };
                command = Some(known);
            }
            _ => {
                return Err(usage_error(
                    &format!("unexpected argument '{text}' found"),
                    command,
                ))
            }
        }
    }
    if let Some(topics) = help_for {
        return Err(match topics.first() {
            None => printed(main_help()),
            Some(name) => match command_help(name) {
                Some(help) => printed(help),
                None => usage_error(&format!("unrecognized subcommand '{name}'"), None),
            },
        });
    }
    let command = match command {
        Some("run") => Command::Run,
        Some("check") => Command::Check { json },
        Some("purge") => Command::Purge,
        Some(_) => Command::Dashboard {
            wait: wait.unwrap_or(Duration::from_secs(3)),
        },
        None => {
            return Err(Exit {
                text: main_help(),
                code: 2,
            })
        }
    };
    Ok(Cli { config, command })
}

fn main() -> ExitCode {
    let cli = match parse_args(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        Err(exit) if exit.code == 0 => {
            print!("{}", exit.text);
            return ExitCode::SUCCESS;
        }
        Err(exit) => {
            eprint!("{}", exit.text);
            return ExitCode::from(exit.code);
        }
    };
    host2mqtt::logging::init();
    let cfg = match load_config(cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("host2mqtt: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let result = match cli.command {
        Command::Check { json } => check(&cfg, json),
        Command::Run => block_on(run(cfg)),
        Command::Purge => block_on(purge(cfg)),
        Command::Dashboard { wait } => block_on(dashboard(cfg, wait)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("host2mqtt: {e}");
            ExitCode::from(EX_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("host2mqtt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Config(ConfigError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn block_on<T, F: std::future::Future<Output = Result<T, Failure>>>(f: F) -> Result<T, Failure> {
    // One thread: the work is a few file reads and one socket every cycle.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(e.into()))?;
    rt.block_on(f)
}

fn load_config(explicit: Option<PathBuf>) -> Result<Config, ConfigError> {
    let file = explicit
        .or_else(|| std::env::var_os("HOST2MQTT_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let p = PathBuf::from(DEFAULT_CONFIG);
            p.exists().then_some(p)
        });
    Config::load(file.as_deref(), std::env::vars())
}

/// Builds every part from the config (the one validation path for `run`
/// and `check`) and starts the sources.
fn start(cfg: &Config) -> Result<(Agent, mpsc::Receiver<()>, SessionOptions), Failure> {
    let parts = wiring::build(cfg).map_err(Failure::Config)?;
    let mut agent = Agent::new(parts.model, parts.interval, parts.collectors);
    for source in parts.sources {
        tokio::spawn(source.task);
        agent.add_source(source.handle);
    }
    Ok((agent, parts.pokes, parts.session))
}

fn check(cfg: &Config, json: bool) -> Result<(), Failure> {
    let agent = block_on(async {
        // Sources (container engine, systemd) answer once; one that does
        // not within the wait shows as unavailable, as it would in `run`.
        let (mut agent, _pokes, _session) = start(cfg)?;
        // Two cycles a second apart: rates need a previous sample.
        agent.cycle(&Tick::now());
        tokio::join!(
            host2mqtt::source::settle(agent.sources(), SOURCE_SETTLE),
            tokio::time::sleep(Duration::from_secs(1))
        );
        agent.cycle(&Tick::now());
        Ok(agent)
    })?;
    if json {
        let messages: Vec<serde_json::Value> = agent
            .announcement()
            .into_iter()
            .map(|(topic, payload, retain)| {
                let payload = serde_json::from_str::<serde_json::Value>(&payload)
                    .unwrap_or(serde_json::Value::String(payload));
                serde_json::json!({ "topic": topic, "retain": retain, "payload": payload })
            })
            .collect();
        let text = serde_json::to_string_pretty(&messages).map_err(|e| Failure::Other(e.into()))?;
        println!("{text}");
    } else {
        print_table(&agent, agent.readings());
    }
    Ok(())
}

fn print_table(agent: &Agent, readings: &[Reading]) {
    let m = &agent.model;
    println!(
        "device {:?} (node_id {}) on {} — {} entities",
        m.device.name,
        m.device.node_id,
        m.topics.state,
        readings.len()
    );
    let rows: Vec<(String, &str, String)> = readings
        .iter()
        .map(|r| {
            let spec = discovery::EntitySpec::of(r);
            (
                m.default_entity_id(&spec),
                r.name.as_str(),
                discovery::display_value(r),
            )
        })
        .collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w1 = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    println!("{:w0$}  {:w1$}  VALUE", "ENTITY", "NAME");
    for (id, name, value) in rows {
        println!("{id:w0$}  {name:w1$}  {value}");
    }
}

fn start_session(
    opts: SessionOptions,
) -> Result<
    (
        host2mqtt::session::Publisher,
        mpsc::Receiver<SessionEvent>,
        tokio::task::JoinHandle<()>,
    ),
    Failure,
> {
    let (publisher, session) = Session::new(opts).map_err(|e| {
        Failure::Config(ConfigError::Key {
            key: "mqtt.tls".into(),
            message: e.to_string(),
        })
    })?;
    let (tx, rx) = mpsc::channel(16);
    let task = tokio::spawn(session.run(tx));
    Ok((publisher, rx, task))
}

async fn run(cfg: Config) -> Result<(), Failure> {
    let (mut agent, pokes, opts) = start(&cfg)?;
    let (publisher, events, session) = start_session(opts)?;
    host2mqtt::source::settle(agent.sources(), SOURCE_SETTLE).await;
    if let Some(listener) = host2mqtt::prometheus::bind(&cfg.prometheus)
        .await
        .map_err(Failure::Config)?
    {
        let (tx, rx) = tokio::sync::watch::channel(String::new());
        agent.export_metrics(tx);
        tracing::info!(listen = %cfg.prometheus.listen, "prometheus endpoint at /metrics");
        tokio::spawn(host2mqtt::prometheus::serve(listener, rx));
    }
    agent::run(agent, publisher, agent::Systemd, events, pokes, shutdown_signal()).await;
    // Give the offline message and DISCONNECT a moment to leave.
    if tokio::time::timeout(Duration::from_secs(3), session)
        .await
        .is_err()
    {
        tracing::warn!("broker did not take the disconnect in 3s; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}

/// Connects, waits until connected, then hands every message for `wait`.
async fn dashboard(cfg: Config, wait: Duration) -> Result<(), Failure> {
    let filter = format!("{}/device/+/config", cfg.homeassistant.discovery_prefix);
    let id = format!("host2mqtt-dashboard-{}", std::process::id());
    let mut opts = cfg
        .mqtt
        .session_options(id, None, vec![filter.clone()], |name| std::env::var(name).ok())
        .map_err(Failure::Config)?;
    // Discovery payloads are kilobytes (a host with many containers: more).
    opts.message_limit = host2mqtt::session::V311_READ_LIMIT_BYTES;
    let (publisher, mut events, session) = start_session(opts)?;
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    let collected = tokio::time::timeout(Duration::from_secs(15) + wait, async {
        let mut until = None;
        loop {
            let deadline = until.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(15));
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(SessionEvent::Connected)) => {
                    until.get_or_insert(tokio::time::Instant::now() + wait);
                }
                Ok(Some(SessionEvent::Message { topic, payload })) => {
                    messages.retain(|(t, _)| *t != topic);
                    messages.push((topic, payload));
                }
                Ok(Some(SessionEvent::Disconnected)) => {}
                Ok(None) => return false,
                Err(_) => return until.is_some(),
            }
        }
    })
    .await;
    let _ = publisher.disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    if !matches!(collected, Ok(true)) {
        return Err(anyhow::anyhow!(
            "could not connect to {}:{} within 15s",
            cfg.mqtt.host,
            cfg.mqtt.port
        )
        .into());
    }
    let hosts = host2mqtt::dashboard::hosts_from_discovery(&messages);
    if hosts.is_empty() {
        return Err(anyhow::anyhow!("no host2mqtt device in the retained messages on {filter}").into());
    }
    eprintln!(
        "host2mqtt: {} hosts: {}",
        hosts.len(),
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    print!("{}", host2mqtt::dashboard::dashboard_yaml(&hosts));
    Ok(())
}

async fn purge(cfg: Config) -> Result<(), Failure> {
    let model = cfg.model();
    let topics = model.topics.clone();
    // Its own client id, so a running agent is not kicked off the broker.
    let id = format!("{}-purge", cfg.mqtt.client_id(&model.device.node_id));
    let opts = cfg
        .mqtt
        .session_options(id, None, vec![], |name| std::env::var(name).ok())
        .map_err(Failure::Config)?;
    let (publisher, mut events, session) = start_session(opts)?;
    let connected = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(ev) = events.recv().await {
            if ev == SessionEvent::Connected {
                return true;
            }
        }
        false
    })
    .await;
    if !matches!(connected, Ok(true)) {
        return Err(anyhow::anyhow!(
            "could not connect to {:?} within 15s",
            cfg.mqtt.brokers().unwrap_or_default()
        )
        .into());
    }
    for topic in [&topics.discovery, &topics.info, &topics.availability] {
        publisher
            .publish(topic, Vec::new(), true)
            .map_err(|e| Failure::Other(e.into()))?;
    }
    let _ = publisher.disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    println!(
        "removed device {} from Home Assistant (cleared {}, {} and {})",
        model.device.node_id, topics.discovery, topics.info, topics.availability
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Cli, Exit> {
        parse_args(args.split_whitespace().map(std::ffi::OsString::from))
    }

    #[test]
    fn commands_and_options_parse_in_any_order() {
        let cli = parse("-c /etc/h.toml check --json").expect("parses");
        assert_eq!(cli.config, Some(PathBuf::from("/etc/h.toml")));
        assert_eq!(cli.command, Command::Check { json: true });
        for args in [
            "check --config=/x",
            "--config /x check",
            "check -c/x",
            "-c /x check",
        ] {
            let cli = parse(args).expect(args);
            assert_eq!(cli.config, Some(PathBuf::from("/x")), "{args}");
            assert_eq!(cli.command, Command::Check { json: false }, "{args}");
        }
        assert_eq!(parse("run").expect("run").command, Command::Run);
        assert_eq!(parse("purge").expect("purge").command, Command::Purge);
        assert_eq!(
            parse("dashboard").expect("dashboard").command,
            Command::Dashboard {
                wait: Duration::from_secs(3)
            }
        );
        assert_eq!(
            parse("dashboard --wait 500ms").expect("wait").command,
            Command::Dashboard {
                wait: Duration::from_millis(500)
            }
        );
    }

    #[test]
    fn help_and_version_print_and_exit_0() {
        for args in ["--help", "-h", "help"] {
            let exit = parse(args).expect_err(args);
            assert_eq!(exit.code, 0);
            assert!(exit.text.starts_with(ABOUT), "{}", exit.text);
            assert!(
                exit.text.contains("\n  dashboard  Print a Lovelace"),
                "{}",
                exit.text
            );
        }
        for args in ["check --help", "help check", "check -h"] {
            let exit = parse(args).expect_err(args);
            assert_eq!(exit.code, 0);
            assert!(
                exit.text.contains("Usage: host2mqtt check [OPTIONS]"),
                "{}",
                exit.text
            );
            assert!(exit.text.contains("      --json  "), "{}", exit.text);
        }
        let version = parse("--version").expect_err("version");
        assert_eq!((version.code, version.text.as_str()), (0, "host2mqtt 0.1.0\n"));
    }

    #[test]
    fn usage_errors_exit_2_in_clap_words() {
        for (args, first_line) in [
            ("", "Publish this host's metrics"),
            ("bogus", "error: unrecognized subcommand 'bogus'"),
            ("--bogus", "error: unexpected argument '--bogus' found"),
            ("run extra", "error: unexpected argument 'extra' found"),
            ("run --json", "error: unexpected argument '--json' found"),
            (
                "check --json --json",
                "error: the argument '--json' cannot be used multiple times",
            ),
            (
                "-c",
                "error: a value is required for '--config <CONFIG>' but none was supplied",
            ),
            (
                "check -c --json",
                "error: a value is required for '--config <CONFIG>' but none was supplied",
            ),
            (
                "dashboard --wait xyz",
                "error: invalid value 'xyz' for '--wait <WAIT>': expected number at 0",
            ),
            ("help bogus", "error: unrecognized subcommand 'bogus'"),
        ] {
            let exit = parse(args).expect_err(args);
            assert_eq!(exit.code, 2, "{args}");
            assert!(exit.text.starts_with(first_line), "{args}: {}", exit.text);
        }
        assert_eq!(
            parse("check --bogus").expect_err("bogus").text,
            "error: unexpected argument '--bogus' found\n\nUsage: host2mqtt check [OPTIONS]\n\nFor more information, try '--help'.\n"
        );
    }
}
