//! The machine-readable report.

use super::Report;

/// The report as pretty JSON, with a trailing newline.
pub fn render(report: &Report) -> String {
    let mut out = serde_json::to_string_pretty(report).expect("reports always serialize");
    out.push('\n');
    out
}
