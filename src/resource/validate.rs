//! `validate = "COMMAND {path}"`: new content must pass the role's own check (`nginx -t`,
//! `visudo -c`, `sshd -t`) before it may replace what is there, in check and apply alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ResourceError;
use crate::durable::{self, FileSpec};
use crate::system::process::{tail, Shell};
use crate::system::{System, SystemError};

/// What a validate command writes where the temp file's path goes.
pub(crate) const PLACEHOLDER: &str = "{path}";

/// Runs `command` on `content`, written to a private temp file that keeps the managed file's
/// name (`systemd-analyze verify` and some daemons judge a file by its suffix).
///
/// The file goes to a new 0700 directory in the temp dir of the machine running converge,
/// never into the managed tree: check writes nothing there, and a link planted in the tree's
/// `/tmp` leads nowhere. Under `--root` the command runs chrooted into the tree and sees the
/// directory at `/tmp` (see [`System::run_reading`]). The path it is given is spelled only
/// with letters, digits and `._+-/`, so no quoting around `{path}` can make it shell code.
/// Nothing at the managed path is touched. `applying` only words the error.
pub fn run(
    sys: &System,
    command: &str,
    target: &Path,
    content: &mut dyn std::io::Read,
    sensitive: bool,
    applying: bool,
) -> Result<(), ResourceError> {
    let fail = |status: String, output: String| ResourceError::ValidationFailed {
        command: command.to_owned(),
        status,
        output,
        applying,
    };
    let base = private_base();
    let dir = durable::temp::dir_in(&base).map_err(|e| {
        fail(
            format!("could not run: temp dir in {}: {e}", base.display()),
            String::new(),
        )
    })?;
    let name = safe_name(target);
    let real = dir.path().join(&name);
    if let Err(e) = durable::write_file_from(&real, content, &FileSpec::mode(0o600)) {
        return Err(fail(
            format!("could not run: {}: {e}", real.display()),
            String::new(),
        ));
    }
    let seen = sys.seen_at(dir.path()).join(&name);
    let script = command.replace(PLACEHOLDER, &seen.to_string_lossy());
    let env = BTreeMap::new();
    let shell = Shell {
        label: command,
        script: &script,
        cwd: None,
        user: None,
        env: &env,
        timeout: sys.timeouts().validate,
    };
    let finished = sys.run_reading(&shell, dir.path()).map_err(|e| match e {
        SystemError::Spawn { .. } | SystemError::Timeout { .. } => {
            fail(e.to_string(), String::new())
        }
        e => fail(format!("could not run: {e}"), String::new()),
    })?;
    if finished.status.success() {
        return Ok(());
    }
    let status = match finished.status.code() {
        Some(code) => format!("exited with status {code}"),
        None => format!("was killed ({})", finished.status),
    };
    let output = if sensitive {
        // The checker may quote the offending line, and the line may be the secret.
        "output not shown: the file is sensitive".to_owned()
    } else {
        let mut both = finished.stdout;
        both.extend_from_slice(&finished.stderr);
        // The temp path means nothing to the reader; the managed path does.
        tail(&both).replace(&*seen.to_string_lossy(), &target.to_string_lossy())
    };
    Err(fail(status, output))
}

/// The machine's temp dir, unless its spelling is one a shell could read as more than a word.
fn private_base() -> PathBuf {
    let base = std::env::temp_dir();
    if base.is_absolute() && base.to_str().is_some_and(|b| b.chars().all(safe_char)) {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

/// The managed file's name with anything but letters, digits and `._+-` made `_`, and a
/// leading `-` or `.` kept from reading as an option or a hidden name.
fn safe_name(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut safe: String = name
        .chars()
        .map(|c| if safe_char(c) && c != '/' { c } else { '_' })
        .collect();
    if safe.is_empty() || safe.starts_with(['-', '.']) {
        safe.insert(0, '_');
    }
    safe
}

fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "/._+-".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_names_are_spelled_from_a_safe_alphabet() {
        assert_eq!(safe_name(Path::new("/etc/nginx.conf")), "nginx.conf");
        assert_eq!(
            safe_name(Path::new("/etc/a b$(touch x)`y`'\"")),
            "a_b__touch_x__y___"
        );
        assert_eq!(safe_name(Path::new("/etc/-rf")), "_-rf");
        assert_eq!(safe_name(Path::new("/etc/.env")), "_.env");
        assert_eq!(safe_name(Path::new("/etc/ünï")), "_n_");
    }

    #[test]
    fn the_command_sees_the_new_content_under_the_managed_name() {
        let sys = System::new(Path::new("/")).unwrap();
        let target = Path::new("/etc/app/app.conf");
        run(
            &sys,
            "test \"$(basename {path})\" = app.conf && grep -qx 'good' {path}",
            target,
            &mut &b"good\n"[..],
            false,
            true,
        )
        .unwrap();
        let err = run(
            &sys,
            "echo \"bad line in {path}\" >&2; exit 3",
            target,
            &mut &b"bad\n"[..],
            false,
            false,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "would fail validation: `echo \"bad line in {path}\" >&2; exit 3` exited with status 3: \
             bad line in /etc/app/app.conf"
        );
        let err = run(
            &sys,
            "cat {path}; exit 1",
            target,
            &mut &b"s3cret"[..],
            true,
            true,
        )
        .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(
            err.to_string()
                .starts_with("validation failed (the old file was kept): `cat {path}; exit 1` exited with status 1"),
            "{err}"
        );
    }
}
