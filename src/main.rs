//! The `host2mqtt` command: `run`, `check`, `purge`, `dashboard`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
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

#[derive(Parser)]
#[command(
    name = "host2mqtt",
    version,
    about = "Publish this host's metrics to MQTT as a Home Assistant device"
)]
struct Cli {
    /// Config file (TOML). Default: $HOST2MQTT_CONFIG, else /etc/host2mqtt/host2mqtt.toml if it exists.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: collect every interval and publish to the broker.
    Run,
    /// Collect once (twice, a second apart, for rates) and show what would
    /// be published. Needs no broker.
    Check {
        /// Print the exact topics and payloads `run` would publish, as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove this host's device from Home Assistant (empty retained
    /// discovery, info and availability).
    Purge,
    /// Print a Lovelace dashboard of every host2mqtt host on the broker
    /// (from the retained discovery), for HA's raw configuration editor.
    Dashboard {
        /// How long to collect retained discovery after connecting.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
