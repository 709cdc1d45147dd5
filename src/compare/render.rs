//! Printing differences: grouped by kind for people, one record per difference as JSON.

use std::fmt::Write;

use serde::Serialize;

use super::{Difference, Kind, Presence};
use crate::report::human::{visible, write_diff, Style};

/// Differences grouped by kind, field changes as `mode: 0644 → 0600`, unified diffs for text,
/// then the scope's `notes` and a summary line.
pub fn human(diffs: &[Difference], notes: &[String], labels: (&str, &str), style: Style) -> String {
    let mut out = String::new();
    let mut kind: Option<Kind> = None;
    for d in diffs {
        if kind != Some(d.kind) {
            kind = Some(d.kind);
            let _ = writeln!(out, "{}", style.paint("1", d.kind.as_str()));
        }
        let (sign, code, note) = match d.presence {
            Presence::Changed => ("~", "33", String::new()),
            Presence::OnlyInA => ("-", "31", format!("  (only in {})", labels.0)),
            Presence::OnlyInB => ("+", "32", format!("  (only in {})", labels.1)),
        };
        let head = format!("{sign} {}", visible(&d.id));
        let _ = writeln!(out, "  {}{note}", style.paint(code, &head));
        for f in &d.fields {
            let line = match (&f.a, &f.b) {
                (Some(a), Some(b)) => format!("{}: {a} → {b}", f.field),
                (Some(v), None) | (None, Some(v)) if d.presence != Presence::Changed => {
                    format!("{}: {v}", f.field)
                }
                (Some(a), None) => format!("{}: {a} → (none)", f.field),
                (None, Some(b)) => format!("{}: (none) → {b}", f.field),
                (None, None) => f.field.clone(),
            };
            let _ = writeln!(out, "      {}", visible(&line));
        }
        if let Some(diff) = &d.diff {
            write_diff(&mut out, diff, "      ", style);
        }
        if let Some(s) = &d.summary {
            let _ = writeln!(
                out,
                "      content ({}, not shown): {}",
                s.reason,
                s.counts()
            );
        }
    }
    for note in notes {
        let _ = writeln!(out, "note: {}", visible(note));
    }
    out.push_str(&summary(diffs, labels));
    out.push('\n');
    out
}

/// `compare: 3 differences between old.json and new.json (sysctl 1, file 2)`.
pub fn summary(diffs: &[Difference], labels: (&str, &str)) -> String {
    if diffs.is_empty() {
        return format!(
            "compare: no differences between {} and {}",
            labels.0, labels.1
        );
    }
    let mut counts: Vec<(Kind, usize)> = Vec::new();
    for d in diffs {
        match counts.last_mut() {
            Some((k, n)) if *k == d.kind => *n += 1,
            _ => counts.push((d.kind, 1)),
        }
    }
    let by_kind: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{} {n}", k.as_str()))
        .collect();
    format!(
        "compare: {} difference{} between {} and {} ({})",
        diffs.len(),
        if diffs.len() == 1 { "" } else { "s" },
        labels.0,
        labels.1,
        by_kind.join(", ")
    )
}

/// The whole comparison as one JSON document.
pub fn json(diffs: &[Difference], notes: &[String], labels: (&str, &str)) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        a: &'a str,
        b: &'a str,
        equal: bool,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        notes: &'a [String],
        differences: &'a [Difference],
    }
    let doc = Doc {
        a: labels.0,
        b: labels.1,
        equal: diffs.is_empty(),
        notes,
        differences: diffs,
    };
    let mut text = serde_json::to_string_pretty(&doc).expect("differences serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::super::FieldDiff;
    use super::*;

    #[test]
    fn groups_by_kind_with_signs_and_a_summary() {
        let diffs = vec![
            Difference {
                kind: Kind::Sysctl,
                id: "net.core.somaxconn".into(),
                presence: Presence::Changed,
                fields: vec![FieldDiff::new("value", "4096".to_owned(), "128".to_owned())],
                diff: None,
                summary: None,
            },
            Difference {
                kind: Kind::Package,
                id: "htop".into(),
                presence: Presence::OnlyInA,
                fields: vec![FieldDiff::new("version", "3.2.2-2".to_owned(), None)],
                diff: None,
                summary: None,
            },
        ];
        let text = human(&diffs, &[], ("old.json", "new.json"), Style::new(false));
        assert_eq!(
            text,
            "sysctl\n  ~ net.core.somaxconn\n      value: 4096 → 128\npackage\n  - htop  (only in old.json)\n      version: 3.2.2-2\ncompare: 2 differences between old.json and new.json (sysctl 1, package 1)\n"
        );
        assert_eq!(
            human(&[], &[], ("a", "b"), Style::new(false)),
            "compare: no differences between a and b\n"
        );
    }
}
