//! A private Docker Engine per test (`tests/env/docker.sh`): Debian's
//! dockerd with its own data root, exec root, containerd and API socket in
//! a temp directory, stopped and deleted on drop. Nothing here touches
//! another dockerd on the machine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `tests/env/docker.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/env/docker.sh")
}

/// Whether CI runs us: then a missing dockerd fails the test instead of
/// skipping it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether dockerd and docker-compose can be used here; when not, says so
/// (and fails in CI).
pub fn available(test: &str) -> bool {
    let runs = |p: &str, arg: &str| {
        Command::new(p)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    // busybox has no --version; `busybox true` runs an applet.
    let found =
        runs("dockerd", "--version") && runs("docker-compose", "--version") && runs("busybox", "true");
    let root = rustix::process::geteuid().is_root();
    if found && root {
        return true;
    }
    let why = if found {
        "these tests need root (a private dockerd)"
    } else {
        "dockerd, docker-compose or busybox is missing (apt-get install -y docker.io docker-compose busybox-static)"
    };
    assert!(
        !in_ci(),
        "{test}: {why}; CI=true, so this is a failure, not a skip"
    );
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// A private dockerd.
pub struct DockerEnv {
    /// Its directory (data, exec root, socket, log).
    pub dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
}

impl DockerEnv {
    /// Starts dockerd and imports a busybox image (`h2m-bb:latest`).
    /// `None` (after a skip message) when it cannot run here outside CI.
    pub fn start(test: &str) -> Option<DockerEnv> {
        if !available(test) {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("h2md.")
            .tempdir_in("/tmp")
            .expect("tempdir")
            .keep();
        let env = DockerEnv {
            socket: dir.join("docker.sock"),
            dir,
        };
        env.sh(&["start"]);
        Some(env)
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(script())
            .arg(args[0])
            .arg(&self.dir)
            .args(&args[1..])
            .output()
            .expect("run tests/env/docker.sh")
    }

    fn sh(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker.sh {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the docker CLI against this daemon; panics with its output when it fails.
    pub fn docker(&self, args: &[&str]) -> String {
        let mut all = vec!["docker"];
        all.extend_from_slice(args);
        self.sh(&all)
    }

    /// Runs docker-compose against this daemon.
    pub fn compose(&self, args: &[&str]) -> String {
        let mut all = vec!["compose"];
        all.extend_from_slice(args);
        self.sh(&all)
    }
}

impl Drop for DockerEnv {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}
