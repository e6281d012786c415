//! Test harness: a private Mosquitto per test, a recording subscriber and
//! the real `host2mqtt` binary as a child process.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// Whether CI runs us (`CI=true`): then a missing component fails the test
/// instead of skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A test that cannot run here. Under CI that is a failure. Elsewhere it
/// says so on stderr and adds a line to `target/tmp/skipped-tests.txt`,
/// which `tests/run` prints loudly at the end (`cargo test` hides the
/// stderr of a test that passes).
pub fn skip(test: &str, why: &str) {
    assert!(
        !in_ci(),
        "{test}: {why}; CI=true, so this is a failure, not a skip"
    );
    eprintln!("SKIPPED {test}: {why}");
    let list = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(list) {
        let _ = writeln!(f, "{test}: {why}");
    }
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A scratch directory every user can read: Mosquitto started as root
/// drops to user `mosquitto` and must read its config and write its log.
pub fn open_tempdir() -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix("h2m-test-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// Writes a file readable by all.
pub fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}

/// A private Mosquitto on a free loopback port.
pub struct Broker {
    /// The plain listener's port.
    pub port: u16,
    /// Extra config lines (listeners, auth).
    extra: String,
    /// Directory of its config and log.
    pub dir: TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts an anonymous broker.
    pub fn start() -> Broker {
        Broker::start_with("allow_anonymous true\n")
    }

    /// Starts a broker with `extra` appended to its config (must settle
    /// `allow_anonymous` itself); the plain listener is on `self.port`.
    pub fn start_with(extra: &str) -> Broker {
        let dir = open_tempdir();
        let mut b = Broker {
            port: free_port(),
            extra: extra.to_string(),
            dir,
            child: None,
        };
        b.spawn();
        b
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mosquitto.log")
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        write_file(
            &conf,
            &format!(
                "per_listener_settings false\npersistence false\nlog_dest file {}\nlog_type all\nconnection_messages true\nlistener {} 127.0.0.1\n{}",
                self.log_path().display(),
                self.port,
                self.extra
            ),
        );
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto must be installed (apt-get install mosquitto)");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(10));
    }

    /// SIGKILL: the cheapest broker outage.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (retained messages are gone: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One message a subscriber saw.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    pub at: Instant,
}

/// A subscriber on `#` that records everything it receives.
pub struct Recorder {
    pub msgs: Arc<Mutex<Vec<Msg>>>,
    /// The last message per topic when [`Recorder::clear`] last ran: a
    /// retained message sent once stays what a subscriber knows.
    carried: Arc<Mutex<std::collections::HashMap<String, Msg>>>,
    client: rumqttc::Client,
}

impl Recorder {
    /// Subscribes to `filter` on the broker's plain listener; reconnects
    /// by itself when the broker restarts.
    pub fn start(port: u16, filter: &str) -> Recorder {
        Recorder::start_as(port, filter, None)
    }

    /// Like `start`, logging in as `user`/`pass`.
    pub fn start_as(port: u16, filter: &str, login: Option<(&str, &str)>) -> Recorder {
        let id = format!("recorder-{}", fastrand::u32(..));
        let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        if let Some((u, p)) = login {
            opts.set_credentials(u, p);
        }
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (client, mut conn) = rumqttc::Client::new(opts, 64);
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let sink = msgs.clone();

        let sub = client.clone();
        let filter = filter.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = sub.try_subscribe(filter.as_str(), rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let m = Msg {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                            at: Instant::now(),
                        };
                        sink.lock().expect("recorder lock").push(m);
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("recorder subscribed");
        Recorder {
            msgs,
            carried: Arc::default(),
            client,
        }
    }

    /// Waits until a state message of `node`, with the latest info message
    /// merged in (the steady values and `attrs`, as HA combines them),
    /// satisfies `pred`; returns that merged JSON.
    pub fn wait_for_host(
        &self,
        node: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        self.wait_for_host_msg(node, timeout, |_, v| pred(v)).1
    }

    /// [`Recorder::wait_for_host`], with the state message itself.
    pub fn wait_for_host_msg(
        &self,
        node: &str,
        timeout: Duration,
        pred: impl Fn(&Msg, &serde_json::Value) -> bool,
    ) -> (Msg, serde_json::Value) {
        let (state, info) = (
            format!("host2mqtt/{node}/state"),
            format!("host2mqtt/{node}/info"),
        );
        let deadline = Instant::now() + timeout;
        loop {
            // Each state with the info that came before it, as HA sees them.
            let mut cur = self
                .carried
                .lock()
                .expect("recorder lock")
                .get(&info)
                .map(|m| json(&m.payload));
            for m in self.all() {
                if m.topic == info {
                    cur = Some(json(&m.payload));
                    continue;
                }
                if m.topic != state {
                    continue;
                }
                let mut v = json(&m.payload);
                if let (Some(obj), Some(serde_json::Value::Object(extra))) = (v.as_object_mut(), &cur) {
                    for (k, x) in extra {
                        obj.entry(k.clone()).or_insert_with(|| x.clone());
                    }
                }
                if pred(&m, &v) {
                    return (m, v);
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching state of {node} within {timeout:?}; last info {cur:?}; states: {:#?}",
                    self.on(&state)
                        .iter()
                        .map(|m| m.payload.clone())
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything seen so far.
    pub fn all(&self) -> Vec<Msg> {
        self.msgs.lock().expect("recorder lock").clone()
    }

    /// Messages on `topic` so far.
    pub fn on(&self, topic: &str) -> Vec<Msg> {
        self.all().into_iter().filter(|m| m.topic == topic).collect()
    }

    /// Forgets what was seen, but for the last message on each topic.
    pub fn clear(&self) {
        let mut msgs = self.msgs.lock().expect("recorder lock");
        let mut carried = self.carried.lock().expect("recorder lock");
        for m in msgs.drain(..) {
            carried.insert(m.topic.clone(), m);
        }
    }

    /// Waits until a message on `topic` satisfies `pred`; returns it.
    pub fn wait_for(&self, topic: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.on(topic).into_iter().find(|m| pred(m)) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "no matching message on {topic} within {timeout:?}; saw: {:#?}",
                    self.all()
                        .iter()
                        .map(|m| (&m.topic, m.payload.chars().take(120).collect::<String>()))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Publishes (e.g. HA's birth message).
    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(
                topic,
                rumqttc::QoS::AtLeastOnce,
                retain,
                payload.as_bytes().to_vec(),
            )
            .expect("publish");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// The real binary with a config written to a temp file.
pub struct Agent {
    pub child: Child,
    pub stderr_path: PathBuf,
    _dir: TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_host2mqtt")
}

/// A config for a test: the broker on `port`, a fixed node id, a short
/// interval and fast reconnects; `extra` is appended (TOML).
pub fn test_config(port: u16, node_id: &str, extra: &str) -> String {
    format!(
        "interval = \"1s\"\nnode_id = \"{node_id}\"\n{extra}\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nreconnect_min = \"200ms\"\nreconnect_max = \"2s\"\n"
    )
}

impl Agent {
    /// Starts `host2mqtt run` with `config` (TOML text) and extra env.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Agent {
        let dir = open_tempdir();
        let conf = dir.path().join("host2mqtt.toml");
        write_file(&conf, config);
        let stderr_path = dir.path().join("agent.log");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(&conf).arg("run");
        cmd.env("HOST2MQTT_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn host2mqtt");
        Agent {
            child,
            stderr_path,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses a JSON payload, failing the test with the text when it is not JSON.
///
/// A discovery payload (an object with `cmps`) comes back with HA's
/// abbreviations expanded, as HA reads it, so tests assert on HA's
/// documented option names (`unique_id`, not `uniq_id`).
pub fn json(payload: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_str(payload).unwrap_or_else(|e| panic!("not JSON ({e}): {payload}"));
    if v.get("cmps").is_some() {
        host2mqtt::discovery::expand_abbreviations(&mut v);
    }
    v
}

/// Writes bytes to a path (fixtures made at test time).
pub fn write_bytes(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::File::create(path).expect("create");
    f.write_all(bytes).expect("write");
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client
/// certificate, made with openssl in `dir` (files world-readable).
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn make_certs(dir: &Path, ca_name: &str) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_key = format!("{ca_name}.key");
    let ca_crt = format!("{ca_name}.crt");
    let subj = format!("/CN={ca_name}");
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &ca_key, "-out", &ca_crt, "-days", "2", "-subj", &subj],
        ]
        .concat(),
    );
    write_file(
        &dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    );
    for (name, cn) in [("server", "localhost"), ("client", "host2mqtt-test")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subj = format!("/CN={cn}");
        openssl(
            dir,
            &[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subj],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
    }
    for f in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let _ = std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644));
    }
    Certs {
        ca: dir.join(ca_crt),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    }
}

/// Makes a Mosquitto password file with one user.
pub fn make_password_file(path: &Path, user: &str, pass: &str) {
    let ok = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(path)
        .args([user, pass])
        .status()
        .expect("mosquitto_passwd must be installed")
        .success();
    assert!(ok, "mosquitto_passwd failed");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
}
