//! The one typed change record that check prints, apply performs and reports carry.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// What happens to a resource as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// It does not exist yet.
    Create,
    /// It exists and some of its properties change.
    Update,
    /// Something of another kind is replaced by it.
    Replace,
    /// It is removed.
    Remove,
    /// A command runs (`exec`).
    Run,
}

impl Action {
    /// The verb for human output.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Remove => "remove",
            Action::Run => "run",
        }
    }
}

/// One property that changes, shown as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The property, e.g. `mode`.
    pub field: String,
    /// Its live value (`None`: absent).
    pub before: Option<String>,
    /// Its desired value (`None`: absent).
    pub after: Option<String>,
}

impl FieldChange {
    /// Builds a field change.
    pub fn new(field: &str, before: Option<String>, after: Option<String>) -> FieldChange {
        FieldChange {
            field: field.to_owned(),
            before,
            after,
        }
    }
}

/// Size and hash of some content, what reports show instead of sensitive bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    /// Hex sha256.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
}

impl Digest {
    /// Digests `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            sha256: hex::encode(Sha256::digest(bytes)),
            size: bytes.len() as u64,
        }
    }
}

/// A content change: digests always; a unified diff only for text that is not sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContentChange {
    /// The live content (`None`: no file).
    pub before: Option<Digest>,
    /// The desired content.
    pub after: Option<Digest>,
    /// Unified diff, live → desired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// True when the content is sensitive and was left out on purpose.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl ContentChange {
    /// Compares live and desired content for `label` (the path shown in diff headers).
    pub fn between(label: &str, before: Option<&[u8]>, after: &[u8], sensitive: bool) -> Self {
        let diff = if sensitive {
            None
        } else {
            match (
                std::str::from_utf8(before.unwrap_or(b"")),
                std::str::from_utf8(after),
            ) {
                (Ok(b), Ok(a)) if !b.contains('\0') && !a.contains('\0') => Some(
                    similar::TextDiff::from_lines(b, a)
                        .unified_diff()
                        .context_radius(3)
                        .header(&format!("{label} (live)"), &format!("{label} (desired)"))
                        .to_string(),
                ),
                _ => None,
            }
        };
        ContentChange {
            before: before.map(Digest::of),
            after: Some(Digest::of(after)),
            diff,
            redacted: sensitive,
        }
    }
}

/// Everything that changes about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Create, update, replace or remove.
    pub action: Action,
    /// Properties that change.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// Content that changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentChange>,
}

impl Change {
    /// A change with only property changes.
    pub fn fields(action: Action, fields: Vec<FieldChange>) -> Change {
        Change {
            action,
            fields,
            content: None,
        }
    }

    /// Whether `field` is among the changed properties.
    pub fn touches(&self, field: &str) -> bool {
        self.fields.iter().any(|f| f.field == field)
    }
}
