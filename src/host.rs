//! Where the host's files are: the `host.proc`, `host.sys` and `host.root`
//! seam. The same binary reads the host from a container (where they are
//! mounted at e.g. `/host/proc`) and reads fixtures in tests.

use std::path::{Path, PathBuf};

/// The roots under which the host's /proc, /sys and / are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The host's /proc.
    pub proc: PathBuf,
    /// The host's /sys.
    pub sys: PathBuf,
    /// The host's root filesystem (for mount points, /etc/os-release, /run).
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            proc: "/proc".into(),
            sys: "/sys".into(),
            root: "/".into(),
        }
    }
}

impl HostPaths {
    /// A path under the host's /proc (`rel` without a leading slash).
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    /// A path under the host's /sys.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }

    /// A host absolute path (a mount point, `/etc/os-release`) seen from here.
    pub fn root(&self, abs: impl AsRef<Path>) -> PathBuf {
        let abs = abs.as_ref();
        self.root.join(abs.strip_prefix("/").unwrap_or(abs))
    }
}

/// The host's name. When we see the host's own root we ask the kernel;
/// otherwise we run in a container whose UTS namespace has its own name, so
/// the host's `/etc/hostname` under the mounted root is the better source,
/// and the kernel's answer is only the fallback.
pub fn hostname(paths: &HostPaths) -> Option<String> {
    let from_kernel = || read_trimmed(&paths.proc("sys/kernel/hostname"));
    if paths.root == Path::new("/") {
        return from_kernel();
    }
    std::fs::read_to_string(paths.root("/etc/hostname"))
        .ok()
        .and_then(|text| parse_hostname(&text))
        .or_else(from_kernel)
}

/// The name in an `/etc/hostname` file: its first line that is neither
/// blank nor a comment (systemd allows `#` comments there).
pub fn parse_hostname(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
}

/// What `/etc/os-release` says about the distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    /// `NAME`, e.g. "Debian GNU/Linux"; "Linux" when the file omits it.
    pub name: String,
    /// `PRETTY_NAME`, e.g. "Debian GNU/Linux 12 (bookworm)"; "Linux" when
    /// the file omits it.
    pub pretty_name: String,
    /// `VERSION_ID`, e.g. "12"; empty on rolling releases that omit it.
    pub version_id: String,
}

/// The host's os-release: `<root>/etc/os-release`, else
/// `<root>/usr/lib/os-release` as os-release(5) prescribes.
///
/// `/etc/os-release` is usually a relative symlink to the other, which
/// resolves inside the mounted root; an absolute one would point into our
/// own filesystem, and then the fallback is what saves us when it dangles.
pub fn os_release(paths: &HostPaths) -> Option<OsRelease> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|file| std::fs::read_to_string(paths.root(file)).ok())
        .map(|text| parse_os_release(&text))
}

/// Parses os-release(5): `KEY=value` lines in shell quoting, `#` comments.
/// Missing `NAME` and `PRETTY_NAME` take the defaults the format defines.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease {
        name: "Linux".into(),
        pretty_name: "Linux".into(),
        version_id: String::new(),
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote_shell(raw.trim());
        match key.trim() {
            "NAME" => release.name = value,
            "PRETTY_NAME" => release.pretty_name = value,
            "VERSION_ID" => release.version_id = value,
            _ => {}
        }
    }
    release
}

/// Undoes the shell quoting os-release(5) allows: `"…"` with backslash
/// escapes, `'…'` taken literally, or a bare word with backslash escapes.
fn unquote_shell(raw: &str) -> String {
    if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.to_string();
    }
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The running kernel's release, e.g. "6.1.0-18-amd64". The kernel is the
/// host's even inside a container, so /proc is the right source.
pub fn kernel_release(paths: &HostPaths) -> Option<String> {
    read_trimmed(&paths.proc("sys/kernel/osrelease"))
}

/// A one-line file's content, `None` when unreadable or blank.
fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_joins_absolute_host_paths_under_the_root() {
        let h = HostPaths {
            root: "/host/root".into(),
            ..HostPaths::default()
        };
        assert_eq!(h.root("/var/lib"), PathBuf::from("/host/root/var/lib"));
        assert_eq!(h.root("/"), PathBuf::from("/host/root/"));
        assert_eq!(
            HostPaths::default().root("/etc/os-release"),
            PathBuf::from("/etc/os-release")
        );
    }

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    fn fixture_paths(proc: &str, root: &str) -> HostPaths {
        HostPaths {
            proc: fixture(proc),
            sys: fixture("sys/vm"),
            root: fixture(root),
        }
    }

    #[test]
    fn os_release_of_the_captured_debian_follows_its_symlink() {
        let release = os_release(&fixture_paths("proc/vm/t0", "root/vm"));
        assert_eq!(
            release,
            Some(OsRelease {
                name: "Debian GNU/Linux".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
                version_id: "12".into(),
            })
        );
    }

    #[test]
    fn os_release_falls_back_to_usr_lib_when_etc_has_none() {
        let release = os_release(&fixture_paths("proc/vm/t0", "root/reboot")).map(|r| r.pretty_name);
        assert_eq!(release.as_deref(), Some("Ubuntu 24.04.1 LTS"));
    }

    #[test]
    fn os_release_is_none_when_neither_file_exists() {
        assert_eq!(os_release(&fixture_paths("proc/vm/t0", "sys/vm")), None);
    }

    #[test]
    fn parse_os_release_handles_quotes_escapes_comments_and_defaults() {
        let text = "# comment\n\nNAME='Foo \"Linux\"'\nPRETTY_NAME=\"Foo \\\"Linux\\\" \\$1\"\nVERSION_ID=1.2\nBROKEN\n";
        assert_eq!(
            parse_os_release(text),
            OsRelease {
                name: "Foo \"Linux\"".into(),
                pretty_name: "Foo \"Linux\" $1".into(),
                version_id: "1.2".into(),
            }
        );
        let empty = parse_os_release("");
        assert_eq!(
            (empty.name.as_str(), empty.pretty_name.as_str()),
            ("Linux", "Linux")
        );
        assert_eq!(empty.version_id, "");
    }

    #[test]
    fn hostname_on_the_real_root_comes_from_the_kernel() {
        let paths = HostPaths {
            proc: fixture("proc/vm/t0"),
            ..HostPaths::default()
        };
        assert_eq!(hostname(&paths).as_deref(), Some("vm"));
    }

    #[test]
    fn hostname_under_a_mounted_root_prefers_its_etc_hostname() {
        let paths = fixture_paths("proc/vm/t0", "root/reboot");
        assert_eq!(hostname(&paths).as_deref(), Some("ubuntu-box"));
    }

    #[test]
    fn hostname_under_a_mounted_root_falls_back_to_the_kernel() {
        let paths = fixture_paths("proc/vm/t0", "sys/vm");
        assert_eq!(hostname(&paths).as_deref(), Some("vm"));
    }

    #[test]
    fn parse_hostname_skips_comments_and_blank_lines() {
        assert_eq!(
            parse_hostname("# set by cloud-init\n\n  box1  \nother\n").as_deref(),
            Some("box1")
        );
        assert_eq!(parse_hostname("# only a comment\n"), None);
    }

    #[test]
    fn kernel_release_is_the_captured_osrelease() {
        let release = kernel_release(&fixture_paths("proc/vm/t0", "root/vm"));
        assert_eq!(release.as_deref(), Some("6.18.44-fc-v669"));
    }

    #[test]
    fn kernel_release_is_none_without_proc() {
        assert_eq!(
            kernel_release(&fixture_paths("proc/does-not-exist", "root/vm")),
            None
        );
    }
}
