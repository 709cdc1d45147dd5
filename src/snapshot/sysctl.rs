//! Kernel settings: every key under /proc/sys of the running kernel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::system::procfs::SysctlAccess;
use crate::system::{System, SystemError};

/// One kernel parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlEntry {
    /// The value as the kernel reads it back (multi-value keys tab-separated); absent for
    /// write-only keys and reads the kernel refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Whether it is a setting, a read-only report or a write-only trigger.
    pub access: SysctlAccess,
}

pub(super) fn observe(sys: &System) -> Result<BTreeMap<String, SysctlEntry>, SystemError> {
    Ok(sys
        .kernel_settings()?
        .into_iter()
        .map(|s| {
            (
                s.key,
                SysctlEntry {
                    value: s.value,
                    access: s.access,
                },
            )
        })
        .collect())
}
