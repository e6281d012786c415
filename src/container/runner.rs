//! Runs the few CLIs host2mqtt executes (`podman auto-update`, the OS
//! package managers' checks) with a timeout. The program path comes from the config, which is the seam:
//! tests point it at a small script that prints captured podman output.
//!
//! The child runs in its own process group; on timeout the whole group is
//! killed, so a hung podman (or whatever it started) does not linger.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// Why the program could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No such program (not installed, not in PATH).
    #[error("{program}: not found (is it installed and in PATH?)")]
    NotFound {
        /// The program as configured.
        program: PathBuf,
    },
    /// It could not be started (permissions, …).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program as configured.
        program: PathBuf,
        /// What exec said.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for it or reading its output failed.
    #[error("{program} {args}: {source}")]
    Wait {
        /// The program as configured.
        program: PathBuf,
        /// Its arguments, space-separated.
        args: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed.
    #[error("{program} {args}: killed after {}", humantime::format_duration(*.timeout))]
    TimedOut {
        /// The program as configured.
        program: PathBuf,
        /// Its arguments, space-separated.
        args: String,
        /// The timeout.
        timeout: Duration,
    },
}

/// What the program did.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Output {
    /// The last non-empty line of stderr, shortened: what podman says
    /// when it fails ("Error: …").
    pub fn error_line(&self) -> String {
        last_line(&self.stderr)
    }
}

/// The last non-empty line of `text`, shortened, for error messages.
pub fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Runs one program with a timeout.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The program: a bare name is looked up in PATH.
    program: PathBuf,
    /// Environment set for the child on top of ours (`LC_ALL=C`, so that
    /// output meant for people parses the same everywhere).
    env: Vec<(String, String)>,
}

impl Runner {
    /// A runner for `program`.
    pub fn new(program: &Path) -> Self {
        Runner {
            program: program.to_path_buf(),
            env: Vec::new(),
        }
    }

    /// Sets `name=value` in the child's environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// The program.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Runs the program with `args`, no stdin, and collects its output. A
    /// non-zero exit is not an error here (podman prints valid JSON and
    /// exits non-zero when one container failed); the caller decides.
    pub async fn run(&self, args: &[&str], timeout: Duration) -> Result<Output, RunError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                RunError::NotFound {
                    program: self.program.clone(),
                }
            } else {
                RunError::Spawn {
                    program: self.program.clone(),
                    source,
                }
            }
        })?;
        let pid = child.id();
        let joined = || args.join(" ");
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(Output {
                status: out.status,
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
            Ok(Err(source)) => Err(RunError::Wait {
                program: self.program.clone(),
                args: joined(),
                source,
            }),
            Err(_) => {
                // The child itself was killed when its future was dropped
                // (kill_on_drop); its group takes whatever it started.
                if let Some(pgid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                    let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
                }
                Err(RunError::TimedOut {
                    program: self.program.clone(),
                    args: joined(),
                    timeout,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[tokio::test]
    async fn output_and_exit_status_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = script(dir.path(), "p", "echo out; echo 'Error: boom' >&2; exit 3");
        let out = Runner::new(&p)
            .run(&["x"], Duration::from_secs(5))
            .await
            .expect("runs");
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.error_line(), "Error: boom");
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let err = Runner::new(Path::new("/nonexistent/podman"))
            .run(&[], Duration::from_secs(1))
            .await
            .expect_err("missing");
        assert!(matches!(err, RunError::NotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/podman"), "{err}");
    }

    #[tokio::test]
    async fn a_hung_program_and_what_it_started_are_killed_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pidfile = dir.path().join("child.pid");
        // A grandchild that would hold stdout open for a minute.
        let p = script(
            dir.path(),
            "hang",
            &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        );
        let started = std::time::Instant::now();
        let err = Runner::new(&p)
            .run(&["auto-update"], Duration::from_millis(500))
            .await
            .expect_err("times out");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, RunError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("auto-update"), "{err}");
        let grandchild = std::fs::read_to_string(&pidfile).expect("pid").trim().to_string();
        // Reaped by init once killed: give it a moment.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
            stat.is_empty() || stat.split(' ').nth(2) == Some("Z")
        });
        assert!(gone, "grandchild {grandchild} still running");
    }
}
