//! `[[exec]]` declarations: timeout, paths and environment checked.

use std::path::PathBuf;

use super::{Builder, Common};
use crate::resource::exec::{ExecResource, DEFAULT_TIMEOUT};
use crate::resource::{Kind, ResourceId};
use crate::role::Role;

impl Builder<'_> {
    pub(super) fn execs(&mut self, role: &Role) {
        for spec in &role.spec.exec {
            let s = spec.get_ref();
            let mut ok = true;
            let mut fail = |offset: usize, msg: String| {
                self.errors.push(role.error_at(offset, msg));
                ok = false;
            };
            if s.command.get_ref().trim().is_empty() {
                fail(s.command.span().start, "empty command".into());
            }
            if let Some(name) = &s.name {
                if name.get_ref().trim().is_empty() {
                    fail(
                        name.span().start,
                        "empty exec name: expected a name for the report and for after/notify"
                            .into(),
                    );
                } else if let Some(why) = super::control_character(name.get_ref()) {
                    fail(name.span().start, format!("invalid exec name: {why}"));
                }
            }
            if s.sensitive && s.name.is_none() {
                fail(
                    spec.span().start,
                    "a sensitive exec needs a name: its id would show the command".into(),
                );
            }
            for key in s.environment.keys() {
                if key.is_empty() || key.contains(['=', '\0']) {
                    fail(
                        spec.span().start,
                        format!("invalid environment variable name '{key}'"),
                    );
                }
            }
            let creates = s.creates.as_ref().and_then(|p| self.path(role, p));
            let cwd = s.cwd.as_ref().and_then(|p| match p.get_ref().as_str() {
                "/" => Some(PathBuf::from("/")),
                _ => self.path(role, p),
            });
            if (s.creates.is_some() && creates.is_none()) || (s.cwd.is_some() && cwd.is_none()) {
                continue;
            }
            let Ok(timeout) = self.timeout(role, s.timeout.as_ref()) else {
                continue;
            };
            if !ok {
                continue;
            }
            let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
            let user = s.user.as_ref().map(|u| u.get_ref().clone());
            let r = ExecResource {
                name: s
                    .name
                    .as_ref()
                    .map_or_else(|| s.command.get_ref().clone(), |n| n.get_ref().clone()),
                command: s.command.get_ref().clone(),
                unless: s.unless.clone(),
                onlyif: s.onlyif.clone(),
                creates,
                cwd,
                user: user.clone(),
                environment: s.environment.clone(),
                timeout,
                sensitive: s.sensitive,
            };
            let common = Common {
                implicit_after: user
                    .map(|u| ResourceId::new(Kind::User, u))
                    .into_iter()
                    .collect(),
                ..Common::new(spec.span().start, &s.after)
            };
            self.push(role, common, r);
            self.notify_last(role, &s.notify);
        }
    }
}
