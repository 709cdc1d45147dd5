//! The machine-readable report.

use super::Report;

/// Writes the report as pretty JSON with a trailing newline to `w`, without building it in
/// memory first.
pub fn write(report: &Report, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, report).map_err(std::io::Error::from)?;
    w.write_all(b"\n")
}

/// The report as pretty JSON, with a trailing newline.
pub fn render(report: &Report) -> String {
    let mut out = serde_json::to_string_pretty(report).expect("reports always serialize");
    out.push('\n');
    out
}
