//! sd_notify and journald (not `src/systemd`, which is D-Bus): the test listens on its own
//! NOTIFY_SOCKET, and plays journald by handing the agent a JOURNAL_STREAM
//! that names the agent's stderr.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Datagrams received within `within`.
fn receive(sock: &UnixDatagram, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match sock.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string()),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn notify_sends_ready_watchdog_while_the_loop_runs_and_stopping() {
    let broker = Broker::start();
    let dir = open_tempdir();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    let path = path.display().to_string();
    // WATCHDOG_USEC 1 s: the agent pets every 0.5 s.
    let mut agent = Agent::start(
        &test_config(broker.port, "t_notify", ""),
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "1000000")],
    );
    let first = receive(&sock, Duration::from_secs(3));
    assert_eq!(first.first().map(String::as_str), Some("READY=1"), "{first:?}");
    let pets = first.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pets >= 3, "{pets} watchdog pets in 3 s: {first:?}");

    // A stalled loop stops petting, so systemd would restart it.
    agent.signal("STOP");
    let _ = receive(&sock, Duration::from_millis(100)); // in flight before the stop
    let stalled = receive(&sock, Duration::from_secs(2));
    assert!(stalled.is_empty(), "petting while stopped: {stalled:?}");
    agent.signal("CONT");
    let resumed = receive(&sock, Duration::from_secs(2));
    assert!(resumed.iter().any(|m| m == "WATCHDOG=1"), "{resumed:?}");

    agent.signal("TERM");
    let last = receive(&sock, Duration::from_secs(3));
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
    assert!(agent.wait_exit(Duration::from_secs(5)).success());
}

#[test]
fn under_journald_lines_carry_priorities_and_no_timestamps() {
    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    write_file(&conf, &test_config(free_port(), "t_journal", ""));
    let log = dir.path().join("stderr");
    let file = std::fs::File::create(&log).expect("log");
    let meta = file.metadata().expect("stat");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .arg("run")
        .env("JOURNAL_STREAM", &stream)
        .env("HOST2MQTT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).expect("read log");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("running")),
        "{text}"
    );
    // Nobody listens on that port: a warning.
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("cannot connect")),
        "{text}"
    );
    assert!(lines.iter().all(|l| l.starts_with('<')), "{text}");
    assert!(!text.contains("Z "), "timestamps under journald: {text}");

    // The same variable naming another stream (inherited from a parent
    // service) is ignored: ordinary lines with timestamps.
    let child = Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .arg("run")
        .env("JOURNAL_STREAM", "1:1")
        .env("HOST2MQTT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.lines().next().is_some_and(|l| l.starts_with("20")), "{text}");
}
