//! A private rootful Podman per test (`tests/env/podman.sh`): its own
//! storage, locks and API socket in a temp directory, torn down on drop.
//! Tests in other files (and other engineers' tests) run in parallel, so
//! nothing here touches the machine's default Podman storage.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `tests/env/podman.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/env/podman.sh")
}

use crate::common::skip;

/// Whether podman can be used here; when not, says so (and fails in CI).
pub fn available(test: &str) -> bool {
    let found = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let root = rustix::process::geteuid().is_root();
    if found && root {
        return true;
    }
    let why = if found {
        "these tests need root (a private rootful Podman)"
    } else {
        "podman is not installed (apt-get install -y podman runc uidmap slirp4netns fuse-overlayfs busybox-static)"
    };
    skip(test, why);
    false
}

/// A private Podman with its API service.
pub struct PodmanEnv {
    /// Its directory (storage, run directory, socket, service log).
    pub dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    /// The service's PID, while it runs.
    service: Option<u32>,
}

impl PodmanEnv {
    /// Sets up storage and a busybox image (`localhost/bb:latest`) and
    /// starts the API service. `None` (after a skip message) when podman
    /// cannot be used here and CI is not set.
    pub fn start(test: &str) -> Option<PodmanEnv> {
        if !available(test) {
            return None;
        }
        // Short: conmon's sockets live below it.
        let dir = tempfile::Builder::new()
            .prefix("h2mp.")
            .tempdir_in("/tmp")
            .expect("tempdir")
            .keep();
        let mut env = PodmanEnv {
            socket: dir.join("podman.sock"),
            dir,
            service: None,
        };
        env.sh(&["setup"]);
        env.serve();
        Some(env)
    }

    fn sh(&self, args: &[&str]) -> String {
        let out = Command::new(script())
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .expect("run tests/env/podman.sh");
        assert!(
            out.status.success(),
            "podman.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs podman on this storage; panics with its output when it fails.
    pub fn podman(&self, args: &[&str]) -> String {
        let mut all = vec!["podman"];
        all.extend_from_slice(args);
        self.sh(&all)
    }

    /// Runs podman, whatever its exit status (e.g. `healthcheck run`,
    /// which exits 1 for an unhealthy container); its stdout.
    pub fn podman_status(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(script())
            .arg("podman")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run tests/env/podman.sh");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Starts the API service (again).
    pub fn serve(&mut self) {
        let pid = self.sh(&["serve"]);
        self.service = Some(pid.trim().parse().expect("service pid"));
    }

    /// SIGKILLs the API service: the engine goes away mid-run (the
    /// containers keep running under conmon).
    pub fn kill_service(&mut self) {
        if let Some(pid) = self.service.take() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The typical test set: one container in each state. Returns nothing;
    /// names are `<prefix>run` (label host2mqtt.enable=true), `<prefix>exit`
    /// (exit code 3), `<prefix>pause`, `<prefix>created`, `<prefix>sick`
    /// (running, unhealthy).
    pub fn create_one_of_each(&self, prefix: &str) {
        let name = |s: &str| format!("{prefix}{s}");
        let run = |extra: &[&str], name: &str, cmd: &[&str]| {
            let mut a = vec!["run", "-d", "--network=none", "--name", name];
            a.extend_from_slice(extra);
            a.push("localhost/bb:latest");
            a.extend_from_slice(cmd);
            self.podman(&a);
        };
        run(
            &["--label", "host2mqtt.enable=true"],
            &name("run"),
            &["sleep", "1000"],
        );
        // Exits with 3 right away; `wait` makes sure it has.
        run(&[], &name("exit"), &["sh", "-c", "exit 3"]);
        self.podman(&["wait", &name("exit")]);
        run(&[], &name("pause"), &["sleep", "1000"]);
        self.podman(&["pause", &name("pause")]);
        self.podman(&[
            "create",
            "--network=none",
            "--name",
            &name("created"),
            "localhost/bb:latest",
            "sleep",
            "1000",
        ]);
        // The health timer needs systemd; one manual run with one retry
        // makes it unhealthy.
        run(
            &[
                "--health-cmd",
                "false",
                "--health-retries",
                "1",
                "--health-interval",
                "1h",
            ],
            &name("sick"),
            &["sleep", "1000"],
        );
        let (_, status) = self.podman_status(&["healthcheck", "run", &name("sick")]);
        assert!(status.contains("unhealthy"), "healthcheck said {status:?}");
    }
}

impl Drop for PodmanEnv {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("teardown").arg(&self.dir).status();
    }
}
