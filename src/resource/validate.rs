//! `validate = "COMMAND {path}"`: new content must pass the role's own check (`nginx -t`,
//! `visudo -c`, `sshd -t`) before it may replace what is there, in check and apply alike.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::ResourceError;
use crate::system::process::{tail, Shell};
use crate::system::System;

/// What a validate command writes where the temp file's path goes.
pub const PLACEHOLDER: &str = "{path}";

/// Runs `command` on `content`, written to a private temp file that keeps the managed file's
/// name (`systemd-analyze verify` and some daemons judge a file by its suffix).
///
/// On the live host the temp file lives in the system temp dir; under `--root` the command
/// runs chrooted into the tree, so the file goes to the tree's `/tmp` and is removed after.
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
    let base = if sys.is_live() {
        std::env::temp_dir()
    } else {
        sys.root().join("tmp")
    };
    let dir = tempfile::Builder::new()
        .prefix(".converge-validate-")
        .tempdir_in(&base)
        .map_err(|e| {
            fail(
                format!("could not run: temp dir in {}: {e}", base.display()),
                String::new(),
            )
        })?;
    let name = target.file_name().unwrap_or(std::ffi::OsStr::new("file"));
    let real = dir.path().join(name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&real)
        .and_then(|mut f| std::io::copy(content, &mut f).and_then(|_| f.flush()));
    if let Err(e) = written {
        return Err(fail(
            format!("could not run: {}: {e}", real.display()),
            String::new(),
        ));
    }
    let seen: PathBuf = if sys.is_live() {
        real.clone()
    } else {
        Path::new("/").join(real.strip_prefix(sys.root()).unwrap_or(&real))
    };
    let script = command.replace(PLACEHOLDER, &shell_quote(&seen.to_string_lossy()));
    let env = BTreeMap::new();
    let shell = Shell {
        label: command,
        script: &script,
        cwd: None,
        user: None,
        env: &env,
        timeout: sys.timeouts().validate,
    };
    let finished = sys
        .run_guard(&shell)
        .map_err(|e| fail(e.to_string(), String::new()))?;
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

/// `text` as one word for `sh -c`.
fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c))
    {
        return text.to_owned();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_quote("/tmp/x/nginx.conf"), "/tmp/x/nginx.conf");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
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
