//! The report for people: one block per change with a coloured unified diff, then a summary.

use std::fmt::Write;

use super::rollback::{RestoreStatus, Rollback};
use super::{Mode, Notification, NotifyStatus, Outcome, Report, Status};
use crate::health::{HealthOutcome, HealthStatus};
use crate::resource::{Action, Change, ContentChange};

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Styled output when `color` is true, plain otherwise.
    pub fn new(color: bool) -> Style {
        Style { color }
    }

    /// `text` in the ANSI style `code` (e.g. `1;31`), or as is without colour.
    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// Renders every change and failure, then the summary line.
pub fn render(report: &Report, style: Style) -> String {
    let mut out = Vec::new();
    write(report, style, &mut out).expect("writing to memory does not fail");
    String::from_utf8(out).expect("rendered as text")
}

/// Like [`render`], written to `w` a resource at a time: a first apply of thousands of
/// files is never one string of all their diffs.
pub fn write(report: &Report, style: Style, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut out = String::new();
    for outcome in &report.resources {
        w.write_all(out.as_bytes())?;
        out.clear();
        match outcome.status {
            Status::InSync => {}
            Status::Pending | Status::Changed => change_block(&mut out, outcome, style),
            Status::Failed | Status::Skipped => {
                let head = format!("! {}", outcome.id);
                let _ = writeln!(
                    out,
                    "{}  (role {})\n    {}",
                    style.paint("1;31", &head),
                    outcome.role,
                    // Tools explain over several lines; keep them inside the block.
                    style.paint(
                        "31",
                        &outcome
                            .error
                            .as_deref()
                            .unwrap_or("failed")
                            .replace('\n', "\n    ")
                    )
                );
            }
        }
        for note in &outcome.notes {
            let _ = writeln!(
                out,
                "{}",
                style.paint("2", &format!("note: {}: {note}", outcome.id))
            );
        }
    }
    for n in &report.notifications {
        notification_line(&mut out, n, style);
    }
    for h in &report.health {
        health_line(&mut out, h, style);
    }
    if let Some(why) = &report.refused {
        // Changes made before a file checked in its place are undone by the rollback below;
        // without backups (a tree converged without --state-dir) they stay, and it says so.
        let kept = report.rollback.is_none()
            && report.resources.iter().any(|r| r.status == Status::Changed);
        let what = if kept {
            "what it changed before that file stays (no backups to undo it)"
        } else {
            "nothing of this run is applied"
        };
        let line = format!("! run refused: {why}; {what}");
        let _ = writeln!(out, "{}", style.paint("1;31", &visible(&line)));
    }
    if let Some(r) = &report.rollback {
        rollback_block(&mut out, r, style);
    }
    if let Some(h) = &report.held {
        let instead = match &report.stand_in {
            Some(good) => format!(
                "the host keeps converging its last good bundle {} until a new bundle arrives",
                &good[..good.len().min(12)]
            ),
            None => "no earlier bundle is kept here to converge instead, so nothing is enforced until a new bundle arrives".to_owned(),
        };
        let what = match report.mode {
            Mode::Apply => {
                format!("not applied again: {instead} (`converge apply --force` tries it anyway)")
            }
            Mode::Check => format!("apply will not apply it again: {instead}"),
        };
        let line = format!(
            "⏸ bundle {} was rolled back on this host in run {} ({}); {what}",
            &h.bundle[..h.bundle.len().min(12)],
            h.run,
            h.reason
        );
        let _ = writeln!(out, "{}", style.paint("1;35", &visible(&line)));
    }
    out.push_str(&summary_line(report, style));
    out.push('\n');
    w.write_all(out.as_bytes())
}

/// `check: N resources: X in sync, Y would change, Z failed`.
pub(crate) fn summary_line(report: &Report, style: Style) -> String {
    let s = &report.summary;
    let (mode, verb) = match report.mode {
        Mode::Check => ("check", "would change"),
        Mode::Apply => ("apply", "changed"),
    };
    let mut line = format!(
        "{mode}: {} resource{}: {} in sync, {} {verb}, {} failed",
        s.total,
        if s.total == 1 { "" } else { "s" },
        s.in_sync,
        s.changed,
        s.failed
    );
    if s.skipped > 0 {
        let _ = write!(line, ", {} skipped", s.skipped);
    }
    if s.failed_notifications > 0 {
        let _ = write!(
            line,
            ", {} restart{}/reload{} failed",
            s.failed_notifications,
            if s.failed_notifications == 1 { "" } else { "s" },
            if s.failed_notifications == 1 { "" } else { "s" }
        );
    }
    let unhealthy = report.failed_health().count();
    if unhealthy > 0 {
        let _ = write!(
            line,
            ", {unhealthy} health check{} failed",
            if unhealthy == 1 { "" } else { "s" }
        );
    }
    if report.rollback.as_ref().is_some_and(|r| !r.preview) {
        line.push_str(", rolled back");
    }
    // A check names what it compared the host against; an apply's bundle is in its log line.
    if let Some(b) = report
        .bundle
        .as_ref()
        .filter(|_| report.mode == Mode::Check)
    {
        let _ = write!(
            line,
            "; bundle {} ({})",
            &b.id[..b.id.len().min(12)],
            b.freshness
        );
    }
    let code = if s.failed + s.skipped + s.failed_notifications + unhealthy > 0 {
        "1;31"
    } else if s.changed > 0 {
        "1;33"
    } else {
        "1;32"
    };
    style.paint(code, &line)
}

/// `would restart service:nginx (notified by file:/etc/nginx/nginx.conf)`.
fn notification_line(out: &mut String, n: &Notification, style: Style) {
    let by: Vec<String> = n.notified_by.iter().map(ToString::to_string).collect();
    let by = format!("(notified by {})", by.join(", "));
    let verb = n.action.verb();
    let (code, text) = match n.status {
        NotifyStatus::Pending => ("1;33", format!("↻ would {verb} {} {by}", n.service)),
        NotifyStatus::Done => ("1;33", format!("↻ {verb}ed {} {by}", n.service)),
        NotifyStatus::NotNeeded | NotifyStatus::Skipped => (
            "2",
            format!(
                "  no {verb} of {}: {} {by}",
                n.service,
                n.note.as_deref().unwrap_or("not needed")
            ),
        ),
        NotifyStatus::Failed => ("1;31", format!("! {verb} {} failed {by}", n.service)),
    };
    let _ = writeln!(out, "{}", style.paint(code, &text));
    if let Some(e) = &n.error {
        let _ = writeln!(out, "    {}", style.paint("31", &e.replace('\n', "\n    ")));
    }
}

/// `↺ rolled back run R: health:web failed: ...`, every change undone or not, the services
/// acted on again, and the health checks after.
pub fn rollback_block(out: &mut String, r: &Rollback, style: Style) {
    let head = if r.already_rolled_back {
        format!(
            "↺ run {} was already rolled back: nothing left to undo",
            r.run
        )
    } else if r.preview {
        format!("↺ rollback of run {} would:", r.run)
    } else if r.complete() {
        format!("↺ rolled back run {}: {}", r.run, r.reason)
    } else {
        format!("↺ rollback of run {} incomplete: {}", r.run, r.reason)
    };
    let _ = writeln!(
        out,
        "{}",
        style.paint("1;35", &visible(&head).replace('\n', "\n    "))
    );
    let items = if r.already_rolled_back {
        &[][..]
    } else {
        &r.restored[..]
    };
    for item in items {
        let (code, word) = match (item.status, r.preview) {
            (RestoreStatus::Restored, false) => ("35", "restored"),
            (RestoreStatus::Restored, true) => ("35", "restore"),
            (RestoreStatus::Unchanged, _) => ("2", "unchanged"),
            (RestoreStatus::NotRolledBack, _) => ("1;33", "not rolled back"),
            (RestoreStatus::Failed, _) => ("1;31", "failed to restore"),
            (RestoreStatus::Refused, _) => ("1;31", "refused"),
        };
        let mut line = format!("{word} {}", item.resource);
        if let Some(note) = &item.note {
            let _ = write!(line, ": {note}");
        }
        let _ = writeln!(out, "    {}", style.paint(code, &visible(&line)));
        if let Some(content) = item.content.as_ref().filter(|_| r.preview) {
            content_block(out, content, style);
        }
    }
    for s in &r.services {
        let line = match &s.error {
            None => format!("↻ {}ed {} (rollback)", s.action.verb(), s.unit),
            Some(e) => format!("! {} {} failed (rollback): {e}", s.action.verb(), s.unit),
        };
        let code = if s.error.is_some() { "1;31" } else { "1;33" };
        let _ = writeln!(out, "{}", style.paint(code, &line));
    }
    for h in &r.health {
        health_line(out, h, style);
    }
}

/// `rollback: 3 restored, 1 unchanged, 0 failed, healthy`: the last line of a rollback by
/// hand, with the state of the health checks probed after it.
pub fn rollback_summary(r: &Rollback, style: Style) -> String {
    let count = |status| r.restored.iter().filter(|x| x.status == status).count();
    let (restored, failed) = (count(RestoreStatus::Restored), count(RestoreStatus::Failed));
    let not_undone = count(RestoreStatus::NotRolledBack);
    let mut line = if r.already_rolled_back {
        "rollback: already rolled back, nothing to undo".to_owned()
    } else {
        format!(
            "rollback: {restored} restored, {} unchanged, {failed} failed",
            count(RestoreStatus::Unchanged)
        )
    };
    if not_undone > 0 {
        let _ = write!(line, ", {not_undone} not rolled back");
    }
    let unhealthy = r
        .health
        .iter()
        .filter(|h| h.status == HealthStatus::Failed)
        .count();
    if unhealthy > 0 {
        let _ = write!(
            line,
            ", {unhealthy} health check{} failed",
            if unhealthy == 1 { "" } else { "s" }
        );
    } else if r.health.iter().any(|h| h.status == HealthStatus::Passed) {
        line.push_str(", healthy");
    }
    let code = if failed + not_undone + unhealthy > 0 || !r.complete() {
        "1;31"
    } else if restored > 0 {
        "1;33"
    } else {
        "1;32"
    };
    style.paint(code, &line)
}

/// `♥ health:web passed: GET http://127.0.0.1/ → 200 (HTTP 200)`.
fn health_line(out: &mut String, h: &HealthOutcome, style: Style) {
    let detail = h.detail.as_deref().unwrap_or("");
    let (code, head) = match h.status {
        HealthStatus::Passed => ("1;32", format!("♥ {} passed: {}", h.id, h.probe)),
        HealthStatus::Failed => (
            "1;31",
            format!(
                "! {} failed after {} attempt{}: {}",
                h.id,
                h.attempts,
                if h.attempts == 1 { "" } else { "s" },
                h.probe
            ),
        ),
        HealthStatus::NotRun => ("2", format!("  {} {detail}", h.id)),
    };
    let _ = writeln!(out, "{}", style.paint(code, &head));
    if h.status != HealthStatus::NotRun && !detail.is_empty() {
        let code = if h.status == HealthStatus::Failed {
            "31"
        } else {
            "2"
        };
        let _ = writeln!(
            out,
            "    {}",
            style.paint(code, &visible(detail).replace('\n', "\n    "))
        );
    }
}

fn change_block(out: &mut String, outcome: &Outcome, style: Style) {
    let Some(change) = &outcome.change else {
        return;
    };
    let (sigil, code) = match change.action {
        Action::Create => ("+", "1;32"),
        Action::Update => ("~", "1;33"),
        Action::Replace => ("±", "1;33"),
        Action::Remove => ("-", "1;31"),
        Action::Run => ("»", "1;35"),
    };
    let head = format!("{sigil} {} {}", change.action.verb(), outcome.id);
    let _ = writeln!(out, "{}  (role {})", style.paint(code, &head), outcome.role);
    fields(out, change);
    if let Some(content) = &change.content {
        content_block(out, content, style);
    }
}

/// Control characters in content or values (an escape sequence in a live file, say) would
/// act on the terminal or CI log and could hide lines from the reviewer: show them escaped.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

fn fields(out: &mut String, change: &Change) {
    for f in &change.fields {
        let line = match (&f.before, &f.after) {
            (Some(b), Some(a)) => format!("{}: {b} → {a}", f.field),
            (None, Some(a)) => format!("{}: {a}", f.field),
            (Some(b), None) => format!("{}: {b} → (remove)", f.field),
            (None, None) => f.field.clone(),
        };
        let _ = writeln!(out, "    {}", visible(&line));
    }
}

/// A unified diff, each line indented, control characters escaped, coloured by its sign.
pub(crate) fn write_diff(out: &mut String, diff: &str, indent: &str, style: Style) {
    for line in diff.lines() {
        let line = &*visible(line);
        let painted = if line.starts_with("+++") || line.starts_with("---") {
            style.paint("1", line)
        } else if line.starts_with('+') {
            style.paint("32", line)
        } else if line.starts_with('-') {
            style.paint("31", line)
        } else if line.starts_with("@@") {
            style.paint("36", line)
        } else {
            line.to_owned()
        };
        let _ = writeln!(out, "{indent}{painted}");
    }
}

fn content_block(out: &mut String, content: &ContentChange, style: Style) {
    let digest = |d: &Option<crate::resource::Digest>| match d {
        Some(d) => format!("{} bytes, sha256 {}", d.size, &d.sha256[..12]),
        None => "none".to_owned(),
    };
    match &content.diff {
        Some(diff) => write_diff(out, diff, "    ", style),
        None => {
            let (why, lines) = match &content.summary {
                Some(s) => (s.reason.as_str(), format!(", {}", s.counts())),
                None if content.redacted => ("sensitive", String::new()),
                None => ("binary", String::new()),
            };
            let _ = writeln!(
                out,
                "    content ({why}, not shown): {} → {}{lines}",
                digest(&content.before),
                digest(&content.after)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(visible("a\tb"), "a\tb");
        assert_eq!(
            visible("yes\u{1b}[1A\u{1b}[2K\r"),
            "yes\\u{1b}[1A\\u{1b}[2K\\r"
        );
    }
    use crate::report::{Notification, NotifiedBy, NotifyAction, NotifyStatus};
    use crate::resource::{Kind, ResourceId};

    fn notification(status: NotifyStatus, note: Option<&str>) -> Notification {
        Notification {
            service: ResourceId::new(Kind::Service, "nginx"),
            action: NotifyAction::Restart,
            notified_by: vec![
                NotifiedBy::Resource(ResourceId::new(Kind::File, "/etc/nginx/nginx.conf")),
                NotifiedBy::Resource(ResourceId::new(Kind::Package, "nginx")),
            ],
            status,
            note: note.map(Into::into),
            error: None,
            error_kind: None,
        }
    }

    #[test]
    fn notifications_name_the_service_and_who_asked() {
        let mut out = String::new();
        let plain = Style::new(false);
        notification_line(&mut out, &notification(NotifyStatus::Pending, None), plain);
        notification_line(&mut out, &notification(NotifyStatus::Done, None), plain);
        notification_line(
            &mut out,
            &notification(NotifyStatus::NotNeeded, Some("state = \"stopped\"")),
            plain,
        );
        assert_eq!(
            out,
            "↻ would restart service:nginx (notified by file:/etc/nginx/nginx.conf, package:nginx)\n\
             ↻ restarted service:nginx (notified by file:/etc/nginx/nginx.conf, package:nginx)\n  \
             no restart of service:nginx: state = \"stopped\" (notified by file:/etc/nginx/nginx.conf, package:nginx)\n"
        );
    }
}
