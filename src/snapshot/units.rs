//! systemd unit files: enablement, presets and, when systemd runs, the active state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::system::systemd::UNIT_DIRS;
use crate::system::{System, SystemError};

/// Unit file states that are not configuration: made at boot by generators, or at run time.
const NOT_CONFIGURED: &[&str] = &["generated", "transient"];

/// One unit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitEntry {
    /// `enabled`, `disabled`, `masked`, `static`, `alias`, `indirect`...
    pub state: String,
    /// The distribution preset (`enabled` or `disabled`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `active`, `inactive`, `failed`...; only when systemd ran the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
}

pub(super) fn observe(sys: &System) -> Result<BTreeMap<String, UnitEntry>, SystemError> {
    // A tree without systemd (not installed yet, or another init) has no unit files, and
    // `systemctl --root` fails on it instead of listing nothing.
    let has_units = UNIT_DIRS.iter().any(|d| {
        matches!(
            sys.entry(std::path::Path::new(d)),
            Ok(crate::system::fs::Entry::Directory(_))
        )
    });
    if !has_units {
        return Ok(BTreeMap::new());
    }
    Ok(sys
        .services()
        .unit_files(sys)?
        .into_iter()
        .filter(|u| !NOT_CONFIGURED.contains(&u.state.as_str()))
        .map(|u| {
            (
                u.name,
                UnitEntry {
                    state: u.state,
                    preset: u.preset,
                    active: u.active,
                },
            )
        })
        .collect())
}
