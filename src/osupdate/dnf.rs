//! dnf: `dnf check-update` (dnf 4) or `dnf check-upgrade` (dnf5) exits
//! 100 when upgrades are available, 0 when none, anything else on an
//! error. Each upgrade is one `NAME.ARCH  VERSION  REPO` line; dnf 4 wraps
//! a long name and puts the rest on the next, indented line. An
//! "Obsoleting Packages" section follows, its obsoleted packages indented;
//! it repeats upgrades already listed and is not counted.

use super::Package;

/// The upgrades in the output, in dnf's order.
pub fn parse_check_update(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut wrapped: Option<String> = None;
    for line in text.lines() {
        let lower = line.trim().to_ascii_lowercase();
        if lower.starts_with("obsoleting") || lower.starts_with("security:") {
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let indented = line.starts_with(' ');
        match (fields.as_slice(), indented, wrapped.take()) {
            ([version, _repo], true, Some(name)) => out.push(package(&name, version)),
            ([name], false, None) if name.contains('.') && !name.ends_with('.') => {
                wrapped = Some((*name).to_string());
            }
            ([name, version, _repo], false, _) if name.contains('.') && looks_like_version(version) => {
                out.push(package(name, version));
            }
            _ => {}
        }
    }
    out
}

fn looks_like_version(v: &str) -> bool {
    v.chars().next().is_some_and(|c| c.is_ascii_digit()) && v.contains('-')
}

fn package(name_arch: &str, version: &str) -> Package {
    let name = name_arch.rsplit_once('.').map_or(name_arch, |(n, _)| n);
    Package {
        name: name.to_string(),
        from: None,
        to: version.to_string(),
        security: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnf5_upgrades_are_listed_and_the_obsoleting_section_is_not_counted() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/dnf/dnf5-check-upgrade-fc44.txt"
        ))
        .expect("fixture");
        let p = parse_check_update(&text);
        let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "apparmor-libs",
                "proton-vpn-daemon",
                "proton-vpn-gtk-app",
                "python3-proton-vpn-api-core",
                "python3-proton-vpn-api-core"
            ]
        );
        assert_eq!(p[0].to, "6.0.0~alpha1-1.fc44");
    }

    #[test]
    fn dnf4_output_with_its_metadata_line_and_a_wrapped_name_parses() {
        // The dnf 4 layout (see the module doc); names from Fedora 36.
        let text = "Last metadata expiration check: 0:43:37 ago on Thu Sep 19 14:22:53 2019.\n\
                    \n\
                    kernel.x86_64                       6.2.6-100.fc36           updates\n\
                    python3-dnf-plugin-system-upgrade-extra-long.noarch\n\
                    \x20                                   4.3.1-1.fc36             updates\n\
                    Obsoleting Packages\n\
                    kernel-headers.x86_64               6.2.6-100.fc36           updates\n\
                    \x20   kernel-headers.x86_64           5.18.13-200.fc36         @updates\n";
        let p = parse_check_update(text);
        let names: Vec<_> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["kernel", "python3-dnf-plugin-system-upgrade-extra-long"]);
        assert_eq!(p[1].to, "4.3.1-1.fc36");
    }
}
