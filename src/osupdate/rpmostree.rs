//! rpm-ostree (Fedora CoreOS, Silverblue, bootc hosts): `rpm-ostree status
//! --json`. The booted deployment's version is what runs; a staged
//! deployment (downloaded, waiting for the next boot) or a `cached-update`
//! (what the last `rpm-ostree upgrade --check` found, also written by
//! rpm-ostreed's automatic check policy) is the newer one.

use serde::Deserialize;

/// What the status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The booted deployment's version.
    pub booted: String,
    /// A newer version known locally, and whether it is already staged.
    pub newer: Option<(String, bool)>,
}

#[derive(Deserialize)]
struct StatusJson {
    #[serde(default)]
    deployments: Vec<Deployment>,
    #[serde(default, rename = "cached-update")]
    cached_update: Option<CachedUpdate>,
}

#[derive(Deserialize)]
struct Deployment {
    #[serde(default)]
    version: String,
    #[serde(default)]
    checksum: String,
    #[serde(default)]
    booted: bool,
    #[serde(default)]
    staged: bool,
}

#[derive(Deserialize)]
struct CachedUpdate {
    #[serde(default)]
    version: String,
    #[serde(default)]
    checksum: String,
}

/// Parses the status JSON; no booted deployment is an error.
pub fn parse_status(json: &str) -> Result<Status, String> {
    let s: StatusJson = serde_json::from_str(json).map_err(|e| format!("malformed JSON: {e}"))?;
    let booted = s
        .deployments
        .iter()
        .find(|d| d.booted)
        .ok_or("no booted deployment in rpm-ostree's status")?;
    let staged = s
        .deployments
        .iter()
        .find(|d| d.staged && d.checksum != booted.checksum)
        .map(|d| (d.version.clone(), true));
    let cached = s
        .cached_update
        .filter(|c| !c.checksum.is_empty() && c.checksum != booted.checksum)
        .map(|c| (c.version, false));
    Ok(Status {
        booted: booted.version.clone(),
        newer: staged.or(cached),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rpm-ostree/").to_string() + name,
        )
        .expect("fixture")
    }

    #[test]
    fn an_idle_host_has_its_booted_version_and_nothing_newer() {
        let s = parse_status(&fixture("fcos-idle-zincati.json")).expect("parses");
        assert_eq!(
            s,
            Status {
                booted: "30.1".into(),
                newer: None
            }
        );
    }

    #[test]
    fn a_staged_deployment_is_the_newer_version() {
        let s = parse_status(&fixture("fcos-staged-zincati.json")).expect("parses");
        assert_eq!(s.booted, "31.20200505.3.0");
        assert_eq!(s.newer, Some(("31.20200517.3.0".into(), true)));
    }

    #[test]
    fn a_cached_update_is_newer_and_garbage_is_an_error() {
        let json = r#"{"deployments":[{"version":"40.1","checksum":"aa","booted":true}],
                       "cached-update":{"version":"40.2","checksum":"bb"}}"#;
        let s = parse_status(json).expect("parses");
        assert_eq!(s.newer, Some(("40.2".into(), false)));
        assert!(parse_status("{\"deployments\":[]}").is_err());
        assert!(parse_status("error: …").is_err());
    }
}
