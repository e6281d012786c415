//! The agent against a real Mosquitto: what a subscriber sees, and what
//! happens when the agent, the broker or the connection goes away.

mod common;

use std::time::{Duration, Instant};

use common::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn topics(node: &str) -> (String, String, String) {
    (
        format!("homeassistant/device/{node}/config"),
        format!("host2mqtt/{node}/state"),
        format!("host2mqtt/{node}/availability"),
    )
}

#[test]
fn discovery_state_and_availability_reach_a_subscriber() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let _agent = Agent::start(&test_config(broker.port, "t_basic", ""), &[]);
    let (disc, state, avail) = topics("t_basic");

    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    let d = json(&rec.wait_for(&disc, SECS(10), |_| true).payload);
    assert_eq!(d["dev"]["identifiers"][0], "host2mqtt_t_basic");
    assert_eq!(d["o"]["name"], "host2mqtt");
    assert_eq!(d["state_topic"], state);
    assert_eq!(d["availability"][0]["topic"], avail);
    let cmps = d["cmps"].as_object().expect("cmps");
    for key in [
        "cpu_usage",
        "memory_used",
        "load_1m",
        "boot_time",
        "last_seen",
        "version",
    ] {
        let c = &cmps[key];
        assert_eq!(c["unique_id"], format!("host2mqtt_t_basic_{key}"), "{key}");
        assert!(c["default_entity_id"]
            .as_str()
            .expect("id")
            .ends_with(&format!("t_basic_{key}")));
        assert!(c.get("object_id").is_none(), "object_id is deprecated");
    }
    assert!(
        cmps["cpu_usage"]["expire_after"].as_u64() == Some(3),
        "3 x 1s interval"
    );
    assert!(
        cmps["last_seen"].get("expire_after").is_none(),
        "last seen must outlive silence"
    );

    // Two states a second apart: the second has rates.
    let first = rec.wait_for(&state, SECS(10), |_| true);
    let second = rec.wait_for(&state, SECS(10), |m| {
        m.at > first.at && json(&m.payload)["cpu_usage"].is_number()
    });
    let s = json(&second.payload);
    assert!(!second.retain, "state is not retained");
    // Every entity's value is in the state, or, for the steady ones (the
    // kernel, the version), in the retained info.
    let info_topic = "host2mqtt/t_basic/info";
    let info = rec.wait_for(info_topic, SECS(5), |_| true);
    let i = json(&info.payload);
    for (key, c) in cmps {
        let (from, payload) = match c.get("state_topic").and_then(|t| t.as_str()) {
            Some(t) if t == info_topic => ("info", &i),
            _ => ("state", &s),
        };
        assert!(payload.get(key).is_some(), "{from} has no {key}: {payload}");
    }
    for key in ["kernel", "version", "boot_time"] {
        assert!(s.get(key).is_none() && i.get(key).is_some(), "{key} is steady");
        assert!(
            cmps[key].get("expire_after").is_none(),
            "{key} is sent on change only"
        );
    }

    // A subscriber that comes later gets discovery, info and online, retained.
    let late = Recorder::start(broker.port, "#");
    late.wait_for(&disc, SECS(5), |m| m.retain);
    late.wait_for(info_topic, SECS(5), |m| m.retain && m.payload == info.payload);
    late.wait_for(&avail, SECS(5), |m| m.retain && m.payload == "online");

    // Neither discovery nor the info is re-sent every cycle.
    std::thread::sleep(SECS(3));
    assert_eq!(rec.on(&disc).len(), 1, "discovery published more than once");
    assert_eq!(rec.on(info_topic).len(), 1, "info published more than once");
}

#[test]
fn sigkill_makes_the_broker_publish_offline() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let mut agent = Agent::start(&test_config(broker.port, "t_kill", ""), &[]);
    let (_, _, avail) = topics("t_kill");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    agent.signal("KILL");
    agent.wait_exit(SECS(5));
    rec.wait_for(&avail, SECS(10), |m| m.payload == "offline");
    // Live subscribers get retain=0 (MQTT 3.1.1); a later one sees it kept.
    let late = Recorder::start(broker.port, "host2mqtt/#");
    late.wait_for(&avail, SECS(5), |m| m.retain && m.payload == "offline");
}

#[test]
fn sigterm_publishes_offline_before_exit() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let mut agent = Agent::start(&test_config(broker.port, "t_term", ""), &[]);
    let (_, _, avail) = topics("t_term");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    agent.signal("TERM");
    let status = agent.wait_exit(SECS(5));
    assert!(status.success(), "exit status {status:?}; log:\n{}", agent.log());
    rec.wait_for(&avail, SECS(2), |m| m.payload == "offline");
    // A clean DISCONNECT: the broker saw no will to publish.
    let log = broker.log();
    assert!(
        !log.contains("closed its connection") || log.contains("disconnected"),
        "{log}"
    );
}

#[test]
fn broker_restart_republishes_discovery_and_online() {
    let mut broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let agent = Agent::start(&test_config(broker.port, "t_restart", ""), &[]);
    let (disc, state, avail) = topics("t_restart");
    rec.wait_for(&disc, SECS(10), |_| true);

    broker.kill();
    // Collection keeps its rhythm while the broker is away (5 cycles).
    std::thread::sleep(SECS(5));
    broker.restart();
    let back = Instant::now();
    rec.wait_for(&avail, SECS(15), |m| m.at > back && m.payload == "online");
    rec.wait_for(&disc, SECS(5), |m| m.at > back);
    rec.wait_for(&state, SECS(5), |m| m.at > back);
    // Stale states were dropped, not queued and replayed.
    std::thread::sleep(Duration::from_millis(500));
    let burst = rec
        .on(&state)
        .iter()
        .filter(|m| m.at > back && m.at < back + SECS(1))
        .count();
    assert!(burst <= 2, "{burst} states replayed right after reconnect");
    assert!(agent.log().contains("connection lost"), "{}", agent.log());
}

#[test]
fn ha_birth_makes_the_agent_announce_again() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let _agent = Agent::start(&test_config(broker.port, "t_birth", ""), &[]);
    let (disc, _, avail) = topics("t_birth");
    rec.wait_for(&disc, SECS(10), |_| true);
    let before = Instant::now();
    rec.publish("homeassistant/status", "online", false);
    rec.wait_for(&disc, SECS(6), |m| m.at > before);
    rec.wait_for(&avail, SECS(5), |m| m.at > before && m.payload == "online");
    // Anything else on the status topic is not a birth.
    let after = Instant::now();
    rec.publish("homeassistant/status", "offline", false);
    std::thread::sleep(SECS(4));
    assert!(
        rec.on(&disc).iter().all(|m| m.at < after),
        "announced on 'offline'"
    );
}

#[test]
fn tls_with_ca_and_password_file() {
    let dir = open_tempdir();
    let certs = make_certs(dir.path(), "h2m-ca");
    let pwfile = dir.path().join("passwd");
    make_password_file(&pwfile, "agent", "s3cret-pw");
    let tls_port = free_port();
    let broker = Broker::start_with(&format!(
        "allow_anonymous false\npassword_file {}\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
        pwfile.display(),
        certs.ca.display(),
        certs.server_cert.display(),
        certs.server_key.display()
    ));
    wait_for_port(tls_port, SECS(5));
    let rec = Recorder::start_as(broker.port, "#", Some(("agent", "s3cret-pw")));
    let secret = dir.path().join("mqtt-password");
    write_file(&secret, "s3cret-pw\n");
    let config = format!(
        "interval = \"1s\"\nnode_id = \"t_tls\"\n[mqtt]\nhost = \"localhost\"\nport = {tls_port}\nusername = \"agent\"\npassword_file = \"{}\"\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"\n",
        secret.display(),
        certs.ca.display()
    );
    let agent = Agent::start(&config, &[]);
    let (disc, state, avail) = topics("t_tls");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    rec.wait_for(&disc, SECS(5), |_| true);
    rec.wait_for(&state, SECS(5), |_| true);
    let log = agent.log();
    assert!(log.contains("mqtts://localhost"), "{log}");
    assert!(!log.contains("s3cret-pw"), "the password was logged:\n{log}");
}

#[test]
fn tls_client_certificate_is_accepted_and_a_wrong_ca_is_a_clear_error() {
    let dir = open_tempdir();
    let certs = make_certs(dir.path(), "h2m-ca");
    let other = open_tempdir();
    let wrong = make_certs(other.path(), "other-ca");
    let tls_port = free_port();
    let broker = Broker::start_with(&format!(
        "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        certs.ca.display(),
        certs.server_cert.display(),
        certs.server_key.display()
    ));
    wait_for_port(tls_port, SECS(5));
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let config = |ca: &std::path::Path, node: &str| {
        format!(
            "interval = \"1s\"\nnode_id = \"{node}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {tls_port}\n[mqtt.tls]\nenabled = true\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            ca.display(),
            certs.client_cert.display(),
            certs.client_key.display()
        )
    };
    let _good = Agent::start(&config(&certs.ca, "t_cert"), &[]);
    rec.wait_for("host2mqtt/t_cert/availability", SECS(10), |m| {
        m.payload == "online"
    });

    let bad = Agent::start(&config(&wrong.ca, "t_wrongca"), &[]);
    std::thread::sleep(SECS(3));
    let log = bad.log();
    assert!(
        log.contains("cannot connect") && log.to_lowercase().contains("certificate"),
        "{log}"
    );
    assert!(rec.on("host2mqtt/t_wrongca/availability").is_empty());
}

#[test]
fn wrong_password_is_refused_clearly_and_retried_with_backoff() {
    let dir = open_tempdir();
    let pwfile = dir.path().join("passwd");
    make_password_file(&pwfile, "agent", "right");
    let broker = Broker::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        pwfile.display()
    ));
    // Default backoff (1 s doubling up to 60 s): attempts near 0, 1, 3, 7 s.
    let config = format!(
        "interval = \"1s\"\nnode_id = \"t_badpw\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nusername = \"agent\"\npassword = \"wrong\"\n",
        broker.port
    );
    let agent = Agent::start(&config, &[]);
    std::thread::sleep(SECS(8));
    let attempts = broker.log().matches("New connection from").count();
    assert!(
        (3..=6).contains(&attempts),
        "{attempts} attempts in 8 s:\n{}",
        broker.log()
    );
    let log = agent.log();
    assert!(log.contains("not authorised"), "{log}");
    assert!(!log.contains("wrong"), "the password was logged:\n{log}");
}

#[test]
fn bad_config_exits_78_naming_the_key_and_publishes_nothing() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    for (config, env, key) in [
        (
            test_config(broker.port, "t_bad", "[mqtt.tls]\nenabeld = true"),
            vec![],
            "enabeld",
        ),
        (
            test_config(broker.port, "t_bad", ""),
            vec![("HOST2MQTT__MQTT__PORT", "many")],
            "mqtt.port",
        ),
        (
            test_config(broker.port, "t_bad", "").replace("interval = \"1s\"", "interval = \"often\""),
            vec![],
            "interval",
        ),
    ] {
        let mut agent = Agent::start(&config, &env);
        let status = agent.wait_exit(SECS(5));
        assert_eq!(status.code(), Some(78), "{}", agent.log());
        assert!(
            agent.log().contains(key),
            "error does not name {key}: {}",
            agent.log()
        );
    }
    let dir = open_tempdir();
    let out = std::process::Command::new(bin())
        .args([
            "--config",
            &dir.path().join("missing.toml").display().to_string(),
            "check",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(rec.all().is_empty(), "published: {:?}", rec.all());
}

#[test]
fn purge_removes_the_device_from_the_broker() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let config = test_config(broker.port, "t_purge", "");
    let mut agent = Agent::start(&config, &[]);
    let (disc, _, avail) = topics("t_purge");
    rec.wait_for(&disc, SECS(10), |_| true);
    agent.signal("TERM");
    agent.wait_exit(SECS(5));

    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    write_file(&conf, &config);
    let out = std::process::Command::new(bin())
        .args(["--config", &conf.display().to_string(), "purge"])
        .output()
        .expect("purge");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    rec.wait_for(&disc, SECS(5), |m| m.payload.is_empty());
    rec.wait_for(&avail, SECS(5), |m| m.payload.is_empty());
    // Nothing retained is left for HA to find.
    let late = Recorder::start(broker.port, "#");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        late.all().iter().all(|m| !m.topic.contains("t_purge")),
        "{:?}",
        late.all()
    );
}

#[test]
fn a_mount_that_disappears_loses_its_entities() {
    let dir = open_tempdir();
    let mnt = dir.path().join("scratch");
    std::fs::create_dir(&mnt).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "h2m-test"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        common::skip(
            "a_mount_that_disappears_loses_its_entities",
            "cannot mount a tmpfs here (not root?)",
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let guard = Unmount(mnt.clone());

    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "homeassistant/#");
    let extra = format!(
        "[collectors.disk]\nmount_points_include = [\"{}\"]\nfs_types_exclude = []\n",
        mnt.display()
    );
    let _agent = Agent::start(&test_config(broker.port, "t_mount", &extra), &[]);
    let (disc, _, _) = topics("t_mount");
    let first = json(&rec.wait_for(&disc, SECS(10), |_| true).payload);
    let key = first["cmps"]
        .as_object()
        .expect("cmps")
        .keys()
        .find(|k| k.starts_with("disk_") && k.ends_with("_used") && !k.contains("inodes"))
        .cloned()
        .unwrap_or_else(|| panic!("no disk entity for the tmpfs: {first}"));

    drop(guard);
    let t = Instant::now();
    let removal = json(&rec.wait_for(&disc, SECS(10), |m| m.at > t).payload);
    assert_eq!(
        removal["cmps"][&key],
        serde_json::json!({"p": "sensor"}),
        "HA's removal stub"
    );
    let t2 = Instant::now();
    let after = json(&rec.wait_for(&disc, SECS(10), |m| m.at > t2).payload);
    assert!(
        after["cmps"].get(&key).is_none(),
        "{key} still announced: {after}"
    );
}

/// Publishes `bytes` zero bytes with `mosquitto_pub` (the issue's reproduction).
fn publish_zeros(port: u16, topic: &str, bytes: usize, retain: bool) {
    use std::io::Write;
    let mut cmd = std::process::Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic, "-s"]);
    if retain {
        cmd.arg("-r");
    }
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&vec![0u8; bytes])
        .expect("write payload");
    assert!(child.wait().expect("mosquitto_pub").success());
}

/// How many times the broker saw `client_id` connect.
fn connects(broker: &Broker, client_id: &str) -> usize {
    broker
        .log()
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(&format!(" as {client_id} ")))
        .count()
}

#[test]
fn an_oversized_retained_status_message_does_not_end_the_session() {
    let broker = Broker::start();
    // Retained before the agent starts: it arrives with every (re)connect.
    publish_zeros(broker.port, "homeassistant/status", 100_000, true);
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let agent = Agent::start(&test_config(broker.port, "t_big", ""), &[]);
    let (_, state, avail) = topics("t_big");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    // The agent subscribes one topic at a time (each after the last one's
    // SUBACK, to tell which one a too-large retained message came on):
    // wait for the command topic.
    let deadline = Instant::now() + SECS(10);
    while !broker
        .log()
        .lines()
        .any(|l| l.contains("host2mqtt-t_big") && l.contains("host2mqtt/t_big/command"))
    {
        assert!(
            Instant::now() < deadline,
            "no SUBSCRIBE to the command topic:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same, live, on both subscribed topics.
    publish_zeros(broker.port, "homeassistant/status", 100_000, false);
    publish_zeros(broker.port, "host2mqtt/t_big/command", 100_000, false);
    std::thread::sleep(SECS(4));
    let after = Instant::now();
    rec.wait_for(&state, SECS(5), |m| m.at > after);
    assert_eq!(
        connects(&broker, "host2mqtt-t_big"),
        1,
        "the session ended:\n{}",
        agent.log()
    );
    assert!(
        rec.on(&avail).iter().all(|m| m.payload == "online"),
        "the will fired"
    );
    let log = agent.log();
    assert!(log.contains("dropped oversized incoming message"), "{log}");
    assert!(
        log.matches("dropped oversized").count() == 1,
        "one line, not one per message:\n{log}"
    );
}

#[test]
fn a_connection_that_dies_at_once_does_not_reset_the_backoff() {
    let broker = Broker::start();
    // Above MQTT 3.1.1's read limit: the connection dies right after the
    // SUBSCRIBE that brought it. The agent then leaves that topic out of
    // its next connects (a minute, doubling): 2 connects in 10 s. Were the
    // topic kept, the backoff (200 ms doubling to 2 s) would still allow
    // about 8, and about 40 if it reset on every connect.
    publish_zeros(broker.port, "homeassistant/status", 2 * 1024 * 1024, true);
    let agent = Agent::start(&test_config(broker.port, "t_poison", ""), &[]);
    std::thread::sleep(SECS(10));
    let n = connects(&broker, "host2mqtt-t_poison");
    println!("connects in 10 s with a 2 MiB retained message: {n}");
    assert!((1..=3).contains(&n), "{n} connects in 10 s:\n{}", agent.log());
    assert!(
        agent.log().contains("MQTT 3.1.1 cannot refuse it"),
        "{}",
        agent.log()
    );
}

#[test]
fn mqtt5_announces_keeps_its_will_and_lets_the_broker_drop_big_messages() {
    let broker = Broker::start();
    publish_zeros(broker.port, "homeassistant/status", 2 * 1024 * 1024, true);
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let disc_rec = Recorder::start(broker.port, "homeassistant/device/#");
    let config = test_config(broker.port, "t_v5", "") + "protocol = \"5\"\nwill_delay = \"2s\"\n";
    let mut agent = Agent::start(&config, &[]);
    let (disc, state, avail) = topics("t_v5");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    disc_rec.wait_for(&disc, SECS(10), |_| true);
    assert!(
        broker.log().contains("as host2mqtt-t_v5 (p5"),
        "not MQTT 5:\n{}",
        broker.log()
    );
    // HA's birth: announce again.
    let before = Instant::now();
    rec.publish("homeassistant/status", "online", false);
    disc_rec.wait_for(&disc, SECS(6), |m| m.at > before);
    rec.wait_for(&state, SECS(5), |m| m.at > before);
    publish_zeros(broker.port, "host2mqtt/t_v5/command", 100_000, false);
    std::thread::sleep(SECS(3));
    assert_eq!(connects(&broker, "host2mqtt-t_v5"), 1, "{}", agent.log());
    // The will, retained, after its delay.
    agent.signal("KILL");
    agent.wait_exit(SECS(5));
    let killed = Instant::now();
    let will = rec.wait_for(&avail, SECS(15), |m| m.payload == "offline");
    println!(
        "will published {:?} after SIGKILL (will_delay 2s)",
        will.at - killed
    );
    let late = Recorder::start(broker.port, "host2mqtt/#");
    late.wait_for(&avail, SECS(5), |m| m.retain && m.payload == "offline");
}

#[test]
fn with_several_hosts_the_agent_moves_to_another_broker() {
    let mut a = Broker::start();
    let mut b = Broker::start();
    let dead = free_port();
    let config = format!(
        "interval = \"1s\"\nnode_id = \"t_hosts\"\n[mqtt]\nhosts = [\"127.0.0.1:{dead}\", \"127.0.0.1:{}\", \"127.0.0.1:{}\"]\nreconnect_min = \"200ms\"\nreconnect_max = \"2s\"\n",
        a.port, b.port
    );
    let agent = Agent::start(&config, &[]);
    let (_, state, avail) = topics("t_hosts");
    let (ra, rb) = (
        Recorder::start(a.port, "host2mqtt/#"),
        Recorder::start(b.port, "host2mqtt/#"),
    );
    let deadline = Instant::now() + SECS(15);
    // The broker the agent is on now: the one with the latest state. On a
    // loaded machine it may already have moved once (a connect that timed
    // out), so "the first to see online" is not enough.
    let latest = |r: &Recorder| r.on(&state).iter().map(|m| m.at).max();
    let on_a = loop {
        let (la, lb) = (latest(&ra), latest(&rb));
        if la.is_some() || lb.is_some() {
            break la > lb;
        }
        assert!(Instant::now() < deadline, "never online:\n{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    let (victim, other) = if on_a { (&mut a, &rb) } else { (&mut b, &ra) };
    // Taken before the kill: the agent can be online on the other broker
    // before kill() has reaped the victim (seen in CI: 1 ms after the
    // connection was lost).
    let killed = Instant::now();
    victim.kill();
    let online = loop {
        if let Some(m) = other
            .on(&avail)
            .into_iter()
            .find(|m| m.at > killed && m.payload == "online")
        {
            break m;
        }
        assert!(
            killed.elapsed() < SECS(20),
            "not online on the other broker within 20 s of the kill:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let fresh = other.wait_for(&state, SECS(10), |m| m.at > killed);
    println!(
        "failover: online {:?}, fresh state {:?} after the kill",
        online.at - killed,
        fresh.at - killed
    );
}

#[test]
fn mqtt5_restart_within_the_will_delay_shows_no_offline() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let config = test_config(broker.port, "t_v5quick", "") + "protocol = \"5\"\nwill_delay = \"5s\"\n";
    let mut first = Agent::start(&config, &[]);
    let (_, state, avail) = topics("t_v5quick");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    first.signal("KILL");
    first.wait_exit(SECS(5));
    let killed = Instant::now();
    let _second = Agent::start(&config, &[]);
    rec.wait_for(&avail, SECS(10), |m| m.at > killed && m.payload == "online");
    rec.wait_for(&state, SECS(10), |m| m.at > killed);
    std::thread::sleep(SECS(6));
    assert!(
        rec.on(&avail).iter().all(|m| m.payload == "online"),
        "the delayed will fired although the agent came back: {:?}",
        rec.on(&avail)
    );
}

/// With the interval within the keepalive, the session pings right after
/// a state (no wake-up of its own) about once per keepalive: the broker
/// keeps the session, and every CONNECT, also after a reconnect past the
/// first ping (when rumqttc's own timer is parked), carries the
/// configured keepalive.
#[test]
fn pings_ride_the_states_and_every_connect_carries_the_keepalive() {
    let mut broker = Broker::start();
    let rec = Recorder::start(broker.port, "host2mqtt/#");
    let config = format!("{}keepalive = \"5s\"\n", test_config(broker.port, "t_ping", ""));
    let agent = Agent::start(&config, &[]);
    let (_, _, avail) = topics("t_ping");
    rec.wait_for(&avail, SECS(10), |m| m.payload == "online");
    let pings = |log: &str| {
        log.lines()
            .filter(|l| l.contains("Received PINGREQ from host2mqtt-t_ping"))
            .count()
    };
    // rumqttc's timer pings 5 s after the CONNACK; then one ping at the
    // first state 3.75 s or more after the last: at about 5, 9, 13 s.
    std::thread::sleep(SECS(14));
    let log = broker.log();
    let n = pings(&log);
    assert!((2..=4).contains(&n), "{n} pings in 14 s at keepalive 5 s:\n{log}");
    assert!(!log.contains("exceeded timeout"), "{log}");
    assert_eq!(connects(&broker, "host2mqtt-t_ping"), 1, "{log}\n{}", agent.log());

    broker.restart();
    let back = Instant::now();
    rec.wait_for(&avail, SECS(15), |m| m.at > back && m.payload == "online");
    std::thread::sleep(SECS(7));
    let log = broker.log();
    let connects: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains(" as host2mqtt-t_ping "))
        .collect();
    assert!(!connects.is_empty(), "{log}");
    for l in connects {
        assert!(l.contains(", k5)"), "a CONNECT without the 5 s keepalive: {l}");
    }
    // (Mosquitto appends to its log across the restart.)
    assert!(pings(&log) > n, "no ping after the reconnect:\n{log}");
    assert!(!log.contains("exceeded timeout"), "{log}");
}
