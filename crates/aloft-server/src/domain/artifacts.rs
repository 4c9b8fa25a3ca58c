//! Artifact rules: when two artifacts conflict, whether one fits a device, and which of a
//! release's artifacts a device gets.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::store::ArtifactRow;

/// The payload type that needs an Update Module (or aloft's native support) announced by the
/// device before the server hands it out: a delta the device cannot apply would only fail.
pub const DELTA_TYPE: &str = "aloft-delta";

/// Whether an artifact's depends hold for a device's provides (`device_type` is matched by
/// the store's query, not here).
pub fn depends_match(
    depends: &BTreeMap<String, Value>,
    provides: &BTreeMap<String, String>,
) -> bool {
    depends.iter().all(|(k, want)| {
        if k == "device_type" {
            return true; // matched by the query
        }
        let Some(have) = provides.get(k) else {
            return false;
        };
        match want {
            Value::String(s) => s == have,
            Value::Array(list) => list.iter().any(|v| v.as_str() == Some(have)),
            _ => false,
        }
    })
}

/// The payload type of an artifact's first update (`None` for a bootstrap artifact).
pub fn payload_type(updates: &Value) -> Option<&str> {
    updates.get(0)?.get("type_info")?.get("type")?.as_str()
}

/// Which of a release's artifacts (for the device's type) a device gets: of those whose
/// depends hold for its provides, and that it can apply, the smallest download. A delta is
/// applicable only to a device that announces the `aloft-delta` module in its inventory's
/// `update_modules` (`modules`), and never to an attempt after a failure (`retried` > 0, under
/// the deployment's `retries`): whatever failed, the retry takes the full artifact.
pub fn choose<'a>(
    candidates: &'a [ArtifactRow],
    provides: &BTreeMap<String, String>,
    modules: &[String],
    retried: u32,
) -> Option<&'a ArtifactRow> {
    let deltas = retried == 0 && modules.iter().any(|m| m == DELTA_TYPE);
    candidates
        .iter()
        .filter(|a| depends_match(&a.depends, provides))
        .filter(|a| deltas || payload_type(&a.updates) != Some(DELTA_TYPE))
        .min_by_key(|a| a.size)
}

/// What a device would get from a deployment of `release`.
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// This artifact.
    Update(&'a ArtifactRow),
    /// Nothing: it runs the release already (and the install is not forced).
    AlreadyInstalled,
    /// Nothing fits, for this reason.
    NoArtifact(String),
}

/// What a device of `device_type` running `installed` gets from `release`, given the
/// release's artifacts for its type ([`choose`] among them).
pub fn outcome<'a>(
    release: &str,
    force: bool,
    device_type: &str,
    candidates: &'a [ArtifactRow],
    provides: &BTreeMap<String, String>,
    modules: &[String],
    retried: u32,
) -> Outcome<'a> {
    if !force && provides.get("artifact_name").map(String::as_str) == Some(release) {
        return Outcome::AlreadyInstalled;
    }
    if candidates.is_empty() {
        return Outcome::NoArtifact(format!(
            "no artifact of {release} is for device type {device_type:?}"
        ));
    }
    match choose(candidates, provides, modules, retried) {
        Some(a) => Outcome::Update(a),
        None => Outcome::NoArtifact(format!(
            "the depends of {release}'s artifacts for {device_type:?} do not hold for the device"
        )),
    }
}

/// The key under which an artifact's depends (other than `device_type`) are compared: two
/// artifacts conflict when they share the name, a device type and this key. Canonical JSON of
/// the sorted map, so the order the artifact listed them in does not matter.
pub fn conflict_key(depends: &BTreeMap<String, Value>) -> String {
    let rest: BTreeMap<&String, &Value> = depends
        .iter()
        .filter(|(k, _)| k.as_str() != "device_type")
        .collect();
    serde_json::to_string(&rest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depends_hold_when_every_key_matches_one_of_its_values() {
        let provides: BTreeMap<String, String> = [
            ("device_type", "board"),
            ("artifact_name", "release-1"),
            ("rootfs-image.version", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let table = [
            (json!({}), true),
            (json!({"device_type": ["other"]}), true), // the query's job
            (json!({"artifact_name": "release-1"}), true),
            (json!({"artifact_name": ["release-0", "release-1"]}), true),
            (json!({"artifact_name": "release-0"}), false),
            (
                json!({"artifact_name": "release-1", "rootfs-image.version": "2"}),
                false,
            ),
            (json!({"missing.key": "x"}), false),
            (json!({"artifact_name": 1}), false),
        ];
        for (d, want) in table {
            assert_eq!(depends_match(&map(d.clone()), &provides), want, "{d}");
        }
    }

    fn artifact(id: &str, kind: &str, size: u64, depends: Value) -> ArtifactRow {
        ArtifactRow {
            id: id.into(),
            name: "release-2".into(),
            description: String::new(),
            device_types: vec!["board".into()],
            depends: map(depends),
            provides: BTreeMap::new(),
            clears: vec![],
            updates: json!([{"type_info": {"type": kind}}]),
            format_version: 3,
            signed: false,
            size,
            sha256: String::new(),
            modified: 0,
        }
    }

    #[test]
    fn a_device_gets_the_smallest_artifact_it_can_apply() {
        let full = artifact("full", "rootfs-image", 100, json!({}));
        let delta = artifact(
            "delta",
            DELTA_TYPE,
            5,
            json!({"rootfs-image.checksum": "v1"}),
        );
        let other = artifact(
            "other",
            DELTA_TYPE,
            4,
            json!({"rootfs-image.checksum": "v0"}),
        );
        let all = [full, delta, other];
        let on = |sum: Option<&str>| -> BTreeMap<String, String> {
            sum.map(|s| ("rootfs-image.checksum".to_owned(), s.to_owned()))
                .into_iter()
                .collect()
        };
        let aloft = vec!["rootfs-image".to_owned(), DELTA_TYPE.to_owned()];
        let stock = vec!["rootfs-image".to_owned()];
        // Each case: the device's checksum, its modules, its failed attempts so far, the
        // artifact it gets.
        let table: [(Option<&str>, &[String], u32, &str); 7] = [
            (Some("v1"), &aloft, 0, "delta"),
            (Some("v0"), &aloft, 0, "other"),
            (Some("v9"), &aloft, 0, "full"), // an unknown version
            (None, &aloft, 0, "full"),       // a delta that failed: the daemon drops its checksum
            (Some("v1"), &stock, 0, "full"), // a stock Mender client without the module
            (Some("v1"), &aloft, 1, "full"), // a retry after a failure
            (Some("v0"), &aloft, 3, "full"),
        ];
        for (sum, modules, retried, want) in table {
            let got = choose(&all, &on(sum), modules, retried).map(|a| a.id.as_str());
            assert_eq!(got, Some(want), "{sum:?} {modules:?} {retried}");
        }
        assert!(choose(&all[1..], &on(Some("v9")), &aloft, 0).is_none());
        assert!(choose(&all[1..], &on(Some("v1")), &aloft, 1).is_none());
    }

    fn map(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    #[allow(clippy::type_complexity)] // the table's row type
    fn what_a_device_gets_and_why_not() {
        let only = [artifact("a", "rootfs-image", 9, json!({"board.rev": "2"}))];
        let provides = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let running = provides(&[("artifact_name", "release-2"), ("board.rev", "2")]);
        let fits = provides(&[("artifact_name", "release-1"), ("board.rev", "2")]);
        let old_board = provides(&[("artifact_name", "release-1"), ("board.rev", "1")]);
        let cases: [(bool, &[ArtifactRow], &BTreeMap<String, String>, &str); 5] = [
            (false, &only, &running, "already-installed"),
            (true, &only, &running, "a"),
            (false, &only, &fits, "a"),
            (
                false,
                &only,
                &old_board,
                "the depends of release-2's artifacts for \"board\" do not hold for the device",
            ),
            (
                false,
                &[],
                &fits,
                "no artifact of release-2 is for device type \"board\"",
            ),
        ];
        for (force, candidates, p, want) in cases {
            let got = match outcome("release-2", force, "board", candidates, p, &[], 0) {
                Outcome::Update(a) => a.id.clone(),
                Outcome::AlreadyInstalled => "already-installed".into(),
                Outcome::NoArtifact(why) => why,
            };
            assert_eq!(got, want, "{force} {p:?}");
        }
    }

    #[test]
    fn device_type_does_not_take_part_in_the_key() {
        let cases = [
            (
                json!({"device_type": ["a"]}),
                json!({"device_type": ["b"]}),
                true,
            ),
            (
                json!({"device_type": ["a"], "rootfs-image.checksum": "x"}),
                json!({"rootfs-image.checksum": "x", "device_type": ["a"]}),
                true,
            ),
            (
                json!({"device_type": ["a"], "rootfs-image.checksum": "x"}),
                json!({"device_type": ["a"], "rootfs-image.checksum": "y"}),
                false,
            ),
            (json!({}), json!({"device_type": ["a"]}), true),
        ];
        for (a, b, same) in cases {
            assert_eq!(
                conflict_key(&map(a.clone())) == conflict_key(&map(b.clone())),
                same,
                "{a} {b}"
            );
        }
    }
}
