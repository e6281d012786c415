use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// A program that prints `stdout_file` and exits with `code`: apt-get,
/// dnf or rpm-ostree as far as the checker can tell.
fn fake(dir: &Path, name: &str, stdout_file: &Path, code: i32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$@\" >> {0}/args\ncat {1}\nexit {code}\n",
            dir.display(),
            stdout_file.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn checker(manager: Manager, program: PathBuf) -> Checker {
    Checker {
        manager,
        root: PathBuf::from("/"),
        program,
        system_bus: None,
        refresh: false,
        timeout: Duration::from_secs(20),
        installed: "12.11".into(),
    }
}

fn get<'a>(r: &'a [Reading], k: &str) -> &'a Reading {
    r.iter().find(|r| r.key == k).unwrap_or_else(|| panic!("no {k}"))
}

#[tokio::test]
async fn apt_pending_updates_become_an_update_entity_and_a_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake(dir.path(), "apt-get", &fixture("apt/debian12-pending.txt"), 0);
    let check = checker(Manager::Apt, prog).check().await.expect("check");
    let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
    assert_eq!(
        args.trim(),
        "-s -o Debug::NoLocking=1 upgrade",
        "never apt-get update unless asked"
    );
    let r = readings("Debian GNU/Linux 12 (bookworm)", Manager::Apt, Some(&check), None);
    assert_eq!(get(&r, "os_updates_pending").value, Value::Int(118));
    let Value::Update(u) = &get(&r, "os_update").value else {
        panic!("not an update")
    };
    assert_eq!(u.installed, "12.11");
    assert_eq!(u.latest, "12.11 (118 updates)");
    assert_eq!(u.title, "Debian GNU/Linux 12 (bookworm)");
    let summary = u.summary.as_deref().expect("summary");
    assert!(summary.starts_with("118 package updates ("), "{summary}");
    assert!(summary.contains("base-files 12.4+deb12u15"), "{summary}");
    assert!(
        summary.chars().count() <= 255 && summary.ends_with("more."),
        "{summary}"
    );
    let attrs = get(&r, "os_updates_pending").attributes.clone().expect("attrs");
    assert_eq!(attrs["manager"], "apt");
    assert_eq!(attrs["packages"].as_array().map(Vec::len), Some(20));
    assert_eq!(get(&r, "os_update").kind, Kind::Update);
}

#[tokio::test]
async fn an_up_to_date_apt_host_has_latest_equal_to_installed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake(dir.path(), "apt-get", &fixture("apt/debian12-up-to-date.txt"), 0);
    let check = checker(Manager::Apt, prog).check().await.expect("check");
    let r = readings("Debian", Manager::Apt, Some(&check), None);
    assert_eq!(get(&r, "os_updates_pending").value, Value::Int(0));
    let Value::Update(u) = &get(&r, "os_update").value else {
        panic!("not an update")
    };
    assert_eq!(u.latest, u.installed);
    assert_eq!(u.summary, None);
}

#[tokio::test]
async fn refresh_runs_apt_get_update_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake(dir.path(), "apt-get", &fixture("apt/debian12-up-to-date.txt"), 0);
    let mut c = checker(Manager::Apt, prog);
    c.refresh = true;
    c.check().await.expect("check");
    let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        ["-q update", "-s -o Debug::NoLocking=1 upgrade"]
    );
}

#[tokio::test]
async fn dnf_exit_100_is_updates_and_it_stays_on_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake(
        dir.path(),
        "dnf",
        &fixture("dnf/dnf5-check-upgrade-fc44.txt"),
        100,
    );
    let check = checker(Manager::Dnf, prog).check().await.expect("check");
    assert_eq!(check.pending(), 5);
    let args = std::fs::read_to_string(dir.path().join("args")).expect("args");
    assert_eq!(args.trim(), "--cacheonly check-update");
}

#[tokio::test]
async fn a_failing_manager_is_unknown_never_up_to_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake(dir.path(), "dnf", Path::new("/dev/null"), 1);
    let err = checker(Manager::Dnf, prog)
        .check()
        .await
        .expect_err("exit 1 is an error");
    assert!(err.contains("exited with 1"), "{err}");
    let mut source = OsUpdatesSource {
        checker: checker(Manager::Dnf, dir.path().join("dnf")),
        title: "Fedora".into(),
        first: Duration::ZERO,
        period: Duration::from_secs(3600),
        last: None,
        error: None,
    };
    source.refresh().await;
    let state = source.state();
    assert!(!state.available);
    assert_eq!(get(&state.readings, "os_updates_pending").value, Value::Missing);
    assert_eq!(get(&state.readings, "os_update").value, Value::Missing);
    // A missing program is the same: unknown, with the reason.
    let mut gone = checker(Manager::Apt, dir.path().join("no-such-apt-get"));
    gone.timeout = Duration::from_secs(5);
    let err = gone.check().await.expect_err("missing");
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test]
async fn a_hung_check_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("apt-get");
    std::fs::write(&path, "#!/bin/sh\nsleep 30\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut c = checker(Manager::Apt, path);
    c.timeout = Duration::from_millis(500);
    let err = c.check().await.expect_err("timed out");
    assert!(err.contains("500ms"), "{err}");
}

#[tokio::test]
async fn rpm_ostree_reports_the_staged_version_as_latest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let prog = fake(
        dir.path(),
        "rpm-ostree",
        &fixture("rpm-ostree/fcos-staged-zincati.json"),
        0,
    );
    let check = checker(Manager::RpmOstree, prog).check().await.expect("check");
    let r = readings("Fedora CoreOS 31", Manager::RpmOstree, Some(&check), None);
    let Value::Update(u) = &get(&r, "os_update").value else {
        panic!("not an update")
    };
    assert_eq!(
        (u.installed.as_str(), u.latest.as_str()),
        ("31.20200505.3.0", "31.20200517.3.0")
    );
    assert_eq!(get(&r, "os_updates_pending").value, Value::Int(1));
}

#[test]
fn update_engine_statuses_map_to_newer_and_in_progress() {
    let base = || Check {
        installed: "3815.2.0".into(),
        newer: None,
        packages: Vec::new(),
        in_progress: false,
        held_back: 0,
        at: SystemTime::UNIX_EPOCH,
    };
    let idle = update_engine_check(base(), "UPDATE_STATUS_IDLE", "0.0.0");
    assert_eq!((idle.newer, idle.in_progress), (None, false));
    let dl = update_engine_check(base(), "UPDATE_STATUS_DOWNLOADING", "3815.2.1");
    assert_eq!((dl.newer.as_deref(), dl.in_progress), (Some("3815.2.1"), true));
    let done = update_engine_check(base(), "UPDATE_STATUS_UPDATED_NEED_REBOOT", "3815.2.1");
    assert_eq!(
        (done.newer.as_deref(), done.in_progress),
        (Some("3815.2.1"), false)
    );
}

#[test]
fn before_the_first_check_the_values_are_unknown_but_the_entities_exist() {
    let r = readings("Debian", Manager::Apt, None, None);
    assert_eq!(r.len(), 2);
    assert!(r
        .iter()
        .all(|r| r.value == Value::Missing && r.group == Some(NAME)));
}

#[test]
fn detection_follows_what_the_host_root_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let paths = HostPaths {
        root: dir.path().to_path_buf(),
        ..HostPaths::default()
    };
    assert_eq!(
        detect(ManagerChoice::Auto, &paths),
        None,
        "nothing here: no entities"
    );
    let touch = |p: &str| {
        let f = dir.path().join(p.trim_start_matches('/'));
        std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
        std::fs::write(f, "").expect("touch");
    };
    touch("/usr/bin/dnf");
    assert_eq!(detect(ManagerChoice::Auto, &paths), Some(Manager::Dnf));
    touch("/usr/bin/apt-get");
    assert_eq!(detect(ManagerChoice::Auto, &paths), Some(Manager::Apt));
    touch("/usr/bin/rpm-ostree");
    touch("/run/ostree-booted");
    assert_eq!(detect(ManagerChoice::Auto, &paths), Some(Manager::RpmOstree));
    touch(UPDATE_ENGINE_POLICY);
    assert_eq!(detect(ManagerChoice::Auto, &paths), Some(Manager::UpdateEngine));
    assert_eq!(detect(ManagerChoice::Apt, &paths), Some(Manager::Apt));
}

#[test]
fn the_installed_version_is_debians_point_release_else_version_id() {
    let deb = HostPaths {
        root: fixture("root/vm"),
        ..HostPaths::default()
    };
    let v = installed_version(&deb);
    assert!(!v.is_empty());
}

#[test]
fn config_keys_are_named_in_errors() {
    use crate::wiring::testing::load_str as load;
    let err = load("[os_updates]\ninterval = \"10s\"\n", &[])
        .expect_err("too often")
        .to_string();
    assert!(err.contains("os_updates.interval"), "{err}");
    let err = load("[os_updates]\nmanager = \"pacman\"\n", &[])
        .expect_err("unknown")
        .to_string();
    assert!(err.contains("os_updates.manager"), "{err}");
    let cfg = load("[os_updates]\nmanager = \"rpm-ostree\"\nrefresh = true\n", &[]).expect("loads");
    assert_eq!(cfg.os_updates.manager, ManagerChoice::RpmOstree);
}

#[test]
fn a_manager_the_agent_cannot_run_is_nothing_here_not_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("apt-get"), "").expect("write");
    let path = Some(dir.path().as_os_str().to_owned());
    assert!(super::in_path(std::path::Path::new("apt-get"), path.clone()));
    assert!(!super::in_path(std::path::Path::new("dnf"), path));
    assert!(!super::in_path(std::path::Path::new("apt-get"), None));
}
