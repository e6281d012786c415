//! Include/exclude glob lists from the config, compiled once when a
//! collector is built.

use glob::{MatchOptions, Pattern};

/// Decides which host-named things (mount points, interfaces, devices) a
/// collector reports: those matching an include pattern (or every one when
/// there is none) and no exclude pattern.
#[derive(Debug, Clone)]
pub struct NameFilter {
    /// Empty: everything is included.
    include: Vec<Pattern>,
    /// Checked after `include`; a match leaves the name out.
    exclude: Vec<Pattern>,
    /// How `*` treats `/`: paths and plain names differ.
    options: MatchOptions,
}

impl NameFilter {
    /// A filter on paths, where `*` stays within one path component and
    /// `**` spans several, so `/run/user/**` does not also need `/run/user/*/*`
    /// and `/mnt/*` does not reach into mounts nested below it.
    pub fn for_paths(config_key: &str, include: &[String], exclude: &[String]) -> Self {
        Self::with_options(
            config_key,
            include,
            exclude,
            MatchOptions {
                require_literal_separator: true,
                ..MatchOptions::new()
            },
        )
    }

    /// A filter on plain names (interfaces, devices, filesystem types).
    pub fn for_names(config_key: &str, include: &[String], exclude: &[String]) -> Self {
        Self::with_options(config_key, include, exclude, MatchOptions::new())
    }

    fn with_options(config_key: &str, include: &[String], exclude: &[String], options: MatchOptions) -> Self {
        NameFilter {
            include: compile_patterns(&format!("{config_key}_include"), include),
            exclude: compile_patterns(&format!("{config_key}_exclude"), exclude),
            options,
        }
    }

    /// Whether `name` is to be reported.
    pub fn allows(&self, name: &str) -> bool {
        let matches = |p: &Pattern| p.matches_with(name, self.options);
        (self.include.is_empty() || self.include.iter().any(matches)) && !self.exclude.iter().any(matches)
    }
}

/// Compiles each pattern. The config was validated already, so a failure
/// here is a bug we log rather than a reason to stop collecting.
fn compile_patterns(config_key: &str, patterns: &[String]) -> Vec<Pattern> {
    patterns
        .iter()
        .filter_map(|p| match Pattern::new(p) {
            Ok(pattern) => Some(pattern),
            Err(error) => {
                tracing::warn!(key = config_key, pattern = %p, %error, "skipping invalid glob pattern");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_empty_include_list_includes_everything_not_excluded() {
        let f = NameFilter::for_names("k", &[], &strings(&["lo", "veth*"]));
        assert!(f.allows("eth0"));
        assert!(!f.allows("lo"));
        assert!(!f.allows("veth1a2b"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = NameFilter::for_names("k", &strings(&["eth*"]), &strings(&["eth1"]));
        assert!(f.allows("eth0"));
        assert!(!f.allows("eth1"));
        assert!(!f.allows("wlan0"));
    }

    #[test]
    fn path_stars_stay_within_a_component_and_double_stars_do_not() {
        let f = NameFilter::for_paths("k", &strings(&["/mnt/*", "/srv/**"]), &[]);
        assert!(f.allows("/mnt/usb"));
        assert!(!f.allows("/mnt/usb/nested"));
        assert!(f.allows("/srv/a/b/c"));
        assert!(!f.allows("/"));
    }

    #[test]
    fn the_default_excludes_keep_the_root_and_drop_runtime_mounts() {
        let d = crate::collector::disk::DiskConfig::default();
        let f = NameFilter::for_paths("k", &d.mount_points_include, &d.mount_points_exclude);
        assert!(f.allows("/"));
        assert!(f.allows("/home"));
        assert!(!f.allows("/proc"));
        assert!(!f.allows("/run/user/1000"));
        assert!(!f.allows("/var/lib/docker/overlay2/abc/merged"));
    }

    #[test]
    fn an_invalid_pattern_is_skipped_not_fatal() {
        let f = NameFilter::for_names("k", &strings(&["[", "eth0"]), &[]);
        assert!(f.allows("eth0"));
        assert!(!f.allows("["));
    }
}
