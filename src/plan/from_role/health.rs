//! `[[health]]` declarations: exactly one probe, durations with units, URLs and addresses
//! that can be probed.

use std::time::Duration;

use toml::Spanned;

use super::Builder;
use crate::health::{self, HealthCheck, Probe};
use crate::role::Role;

impl Builder<'_> {
    pub(super) fn health(&mut self, role: &Role) {
        for spec in &role.spec.health {
            let s = spec.get_ref();
            let offset = spec.span().start;
            let mut errors = Vec::new();
            let name = s.name.get_ref();
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@:".contains(c));
            if !name_ok {
                errors.push((
                    s.name.span().start,
                    format!("invalid health check name '{name}': expected letters, digits, '.', '_', '-', '@' or ':'"),
                ));
            }
            let given = [s.http.is_some(), s.tcp.is_some(), s.command.is_some()];
            let probe = match (&s.http, &s.tcp, &s.command) {
                _ if given.iter().filter(|g| **g).count() != 1 => {
                    errors.push((
                        offset,
                        format!("health check '{name}' needs exactly one of http, tcp or command"),
                    ));
                    None
                }
                (Some(url), _, _) => {
                    let ok = reqwest::Url::parse(url.get_ref())
                        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                    if !ok {
                        errors.push((
                            url.span().start,
                            format!(
                                "invalid http '{}': expected an http:// or https:// URL",
                                url.get_ref()
                            ),
                        ));
                    }
                    let status = s.expect_status.as_ref().map_or(200, |st| *st.get_ref());
                    if let Some(st) = &s.expect_status {
                        if !(100..=599).contains(st.get_ref()) {
                            errors.push((
                                st.span().start,
                                format!(
                                    "invalid expect_status {}: expected an HTTP status 100-599",
                                    st.get_ref()
                                ),
                            ));
                        }
                    }
                    Some(Probe::Http {
                        url: url.get_ref().clone(),
                        status,
                        body: s.expect_body.clone(),
                    })
                }
                (None, Some(addr), _) => {
                    let text = addr.get_ref();
                    let ok = text.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                    });
                    if !ok {
                        errors.push((
                            addr.span().start,
                            format!(
                                "invalid tcp '{text}': expected HOST:PORT, e.g. \"127.0.0.1:5432\""
                            ),
                        ));
                    }
                    Some(Probe::Tcp(text.clone()))
                }
                (None, None, Some(c)) => {
                    if c.get_ref().trim().is_empty() {
                        errors.push((c.span().start, "empty command".into()));
                    }
                    Some(Probe::Command(c.get_ref().clone()))
                }
                _ => None,
            };
            if s.http.is_none() && (s.expect_status.is_some() || s.expect_body.is_some()) {
                errors.push((
                    offset,
                    format!("health check '{name}': expect_status and expect_body go with http"),
                ));
            }
            let timeout = duration(
                "timeout",
                &s.timeout,
                health::DEFAULT_TIMEOUT,
                health::MAX_TIMEOUT,
                false,
                &mut errors,
            );
            let interval = duration(
                "interval",
                &s.interval,
                health::DEFAULT_INTERVAL,
                health::MAX_INTERVAL,
                true,
                &mut errors,
            );
            let retries = match &s.retries {
                None => health::DEFAULT_RETRIES,
                Some(r) if *r.get_ref() <= health::MAX_RETRIES => *r.get_ref(),
                Some(r) => {
                    errors.push((
                        r.span().start,
                        format!(
                            "invalid retries {}: expected at most {}",
                            r.get_ref(),
                            health::MAX_RETRIES
                        ),
                    ));
                    health::DEFAULT_RETRIES
                }
            };
            let settle = duration(
                "settle",
                &s.settle,
                health::DEFAULT_SETTLE,
                health::MAX_SETTLE,
                true,
                &mut errors,
            );
            let passes = s
                .passes
                .as_ref()
                .map_or(health::DEFAULT_PASSES, |p| *p.get_ref());
            if let Some(p) = s
                .passes
                .as_ref()
                .filter(|p| *p.get_ref() == 0 || *p.get_ref() > health::MAX_PASSES)
            {
                errors.push((
                    p.span().start,
                    format!(
                        "invalid passes {}: expected 1 to {} passes in a row",
                        p.get_ref(),
                        health::MAX_PASSES
                    ),
                ));
            }
            let longest = timeout * (retries + 1) + interval * retries;
            if errors.is_empty() && longest > health::MAX_TOTAL {
                errors.push((
                    offset,
                    format!(
                        "health check '{name}' could hold the run for {} when it keeps failing \
                         ((retries + 1) × timeout + retries × interval): expected at most {}",
                        humantime::format_duration(longest),
                        humantime::format_duration(health::MAX_TOTAL)
                    ),
                ));
            }
            let services: Vec<String> = s
                .services
                .iter()
                .map(|n| {
                    let n = n.get_ref();
                    let n = n.strip_prefix("service:").unwrap_or(n);
                    n.strip_suffix(".service").unwrap_or(n).to_owned()
                })
                .collect();
            let had_errors = !errors.is_empty();
            for (at, message) in errors {
                self.errors.push(role.error_at(at, message));
            }
            let Some(probe) = probe.filter(|_| !had_errors) else {
                continue;
            };
            self.health.push(HealthCheck {
                name: name.clone(),
                probe,
                timeout,
                retries,
                interval,
                settle,
                passes,
                services,
                role: role.name.clone(),
                origin: role.location(offset).to_string(),
            });
        }
    }
}

/// A health check's duration key, at most `max`; zero is allowed only where it means "no
/// pause".
fn duration(
    key: &str,
    text: &Option<Spanned<String>>,
    default: Duration,
    max: Duration,
    zero: bool,
    errors: &mut Vec<(usize, String)>,
) -> Duration {
    let Some(t) = text else {
        return default;
    };
    let limits = super::duration::Limits {
        zero,
        max: Some(max),
    };
    super::duration::read(t.get_ref(), limits, "\"5s\" or \"500ms\"").unwrap_or_else(|expected| {
        errors.push((
            t.span().start,
            format!("invalid {key} '{}': {expected}", t.get_ref().escape_debug()),
        ));
        default
    })
}
