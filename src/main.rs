//! The `host2mqtt` command: `run`, `check`, `purge`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

use host2mqtt::agent::{self, Agent};
use host2mqtt::collector::{self, Tick};
use host2mqtt::config::{Config, ConfigError};
use host2mqtt::discovery::{self, OFFLINE};
use host2mqtt::reading::Reading;
use host2mqtt::session::{Backoff, Session, SessionEvent, SessionOptions, TlsFiles};

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
    /// discovery and availability).
    Purge,
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

fn new_agent(cfg: &Config) -> Agent {
    Agent::new(cfg, collector::from_config(cfg))
}

fn check(cfg: &Config, json: bool) -> Result<(), Failure> {
    let agent = block_on(async {
        let mut agent = new_agent(cfg);
        // Sources (container engine, systemd) answer once; one that does
        // not within the wait shows as unavailable, as it would in `run`.
        let (poke_tx, _pokes) = mpsc::channel(1);
        for source in host2mqtt::source::from_config(cfg, poke_tx) {
            tokio::spawn(source.task);
            agent.add_source(source.handle);
        }
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

/// The password: inline, from `password_file`, or from the systemd
/// credential; never logged.
fn password(cfg: &Config) -> Result<Option<String>, ConfigError> {
    let m = &cfg.mqtt;
    if !m.password.is_empty() {
        return Ok(Some(m.password.clone()));
    }
    let from_file = |key: &str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
            .map_err(|e| ConfigError::Key {
                key: key.into(),
                message: format!("cannot read {}: {e}", path.display()),
            })
    };
    if !m.password_file.as_os_str().is_empty() {
        return from_file("mqtt.password_file", &m.password_file);
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = PathBuf::from(dir).join(&m.password_credential);
        if path.exists() {
            return from_file("mqtt.password_credential", &path);
        }
    }
    Ok(None)
}

fn session_options(
    cfg: &Config,
    client_id: String,
    will: Option<(String, String)>,
    subscriptions: Vec<String>,
) -> Result<SessionOptions, Failure> {
    let m = &cfg.mqtt;
    let credentials = match (m.username.is_empty(), password(cfg).map_err(Failure::Config)?) {
        (true, None) => None,
        (true, Some(_)) => {
            return Err(Failure::Config(ConfigError::Key {
                key: "mqtt.username".into(),
                message: "expected a user name when a password is set".into(),
            }))
        }
        (false, p) => Some((m.username.clone(), p.unwrap_or_default())),
    };
    let set = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.clone());
    let tls = m.tls.enabled.then(|| TlsFiles {
        ca_file: set(&m.tls.ca_file),
        client_auth: set(&m.tls.cert_file).zip(set(&m.tls.key_file)),
    });
    Ok(SessionOptions {
        brokers: m.brokers().map_err(Failure::Config)?,
        protocol: m.session_protocol().map_err(Failure::Config)?,
        will_delay: m.will_delay,
        client_id,
        keepalive: m.keepalive,
        credentials,
        tls,
        will,
        subscriptions,
        backoff: Backoff {
            min: m.reconnect_min,
            max: m.reconnect_max,
        },
    })
}

fn client_id(cfg: &Config, node_id: &str) -> String {
    if cfg.mqtt.client_id.is_empty() {
        format!("host2mqtt-{node_id}")
    } else {
        cfg.mqtt.client_id.clone()
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
    let agent = new_agent(&cfg);
    let topics = agent.model.topics.clone();
    let opts = session_options(
        &cfg,
        client_id(&cfg, &agent.model.device.node_id),
        Some((topics.availability.clone(), OFFLINE.to_string())),
        vec![topics.ha_status.clone(), topics.command.clone()],
    )?;
    let (publisher, events, session) = start_session(opts)?;
    let (poke_tx, pokes) = mpsc::channel(1);
    let mut agent = agent;
    for source in host2mqtt::source::from_config(&cfg, poke_tx) {
        tokio::spawn(source.task);
        agent.add_source(source.handle);
    }
    host2mqtt::source::settle(agent.sources(), SOURCE_SETTLE).await;
    agent::run(agent, publisher, events, pokes, shutdown_signal()).await;
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

async fn purge(cfg: Config) -> Result<(), Failure> {
    let agent = Agent::new(&cfg, Vec::new());
    let topics = agent.model.topics.clone();
    // Its own client id, so a running agent is not kicked off the broker.
    let id = format!("{}-purge", client_id(&cfg, &agent.model.device.node_id));
    let (publisher, mut events, session) = start_session(session_options(&cfg, id, None, vec![])?)?;
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
    for topic in [&topics.discovery, &topics.availability] {
        publisher
            .publish(topic, Vec::new(), true)
            .map_err(|e| Failure::Other(e.into()))?;
    }
    let _ = publisher.disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(5), session).await;
    println!(
        "removed device {} from Home Assistant (cleared {} and {})",
        agent.model.device.node_id, topics.discovery, topics.availability
    );
    Ok(())
}
