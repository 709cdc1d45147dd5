//! How a test starts the binary under test on this machine: the one place that does.

use std::ffi::OsStr;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;

use super::tools::{copy_file, OwnState};

/// The converge binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_converge");

/// The subcommands that read the agent config for their state dir.
const STATEFUL: &[&str] = &[
    "check", "apply", "history", "rollback", "status", "pause", "resume",
];

/// What one finished run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout followed by stderr, for messages and for tests that read both.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// `converge ARGS` ready to run: plain output, no `RUST_LOG` of the caller, and, for the
/// commands that keep state, an agent config and state dir of its own after the subcommand
/// unless ARGS name a `--config`. Derefs to the [`Command`], so a test adds arguments,
/// environment or stdio as usual; the state dir lives as long as this value.
pub struct Converge {
    cmd: Command,
    own: Option<OwnState>,
}

/// `converge ARGS` (see [`Converge`]).
pub fn converge<S: AsRef<OsStr>>(args: &[S]) -> Converge {
    converge_via(&[] as &[&str], args)
}

/// `WRAPPER... converge ARGS`, for a test that starts the binary through `timeout`, `unshare`,
/// `sh -c 'exec "$0" "$@" ...'` and the like (see [`Converge`]).
pub fn converge_via<W: AsRef<OsStr>, S: AsRef<OsStr>>(wrapper: &[W], args: &[S]) -> Converge {
    let own = OwnState::new();
    let mut run = converge_with(wrapper, args, &own.config());
    run.own = Some(own);
    run
}

/// Like [`converge_via`] with the agent config `config` (a scenario's own, kept between runs)
/// instead of a fresh one.
pub fn converge_with<W: AsRef<OsStr>, S: AsRef<OsStr>>(
    wrapper: &[W],
    args: &[S],
    config: &Path,
) -> Converge {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(BIN);
            cmd
        }
        None => Command::new(BIN),
    };
    let own_config = args.iter().any(|a| {
        let a = a.as_ref().to_string_lossy();
        a == "--config" || a.starts_with("--config=")
    });
    match args.split_first() {
        Some((sub, rest))
            if !own_config && STATEFUL.contains(&&*sub.as_ref().to_string_lossy()) =>
        {
            cmd.arg(sub).arg("--config").arg(config).args(rest)
        }
        _ => cmd.args(args),
    };
    cmd.env_remove("RUST_LOG").env("NO_COLOR", "1");
    Converge { cmd, own: None }
}

impl Converge {
    /// Adds an argument (as [`Command::arg`], but keeps [`Converge::run`] at hand).
    pub fn arg<S: AsRef<OsStr>>(&mut self, arg: S) -> &mut Converge {
        self.cmd.arg(arg);
        self
    }

    /// Adds arguments (as [`Command::args`], but keeps [`Converge::run`] at hand).
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Converge {
        self.cmd.args(args);
        self
    }

    /// Sets a variable (as [`Command::env`], but keeps [`Converge::run`] at hand).
    pub fn env<K: AsRef<OsStr>, V: AsRef<OsStr>>(&mut self, key: K, value: V) -> &mut Converge {
        self.cmd.env(key, value);
        self
    }

    /// Runs it to the end and collects its exit code and output.
    pub fn run(&mut self) -> Run {
        let out = self
            .cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.cmd));
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The state dir of the agent config it made itself, if it did.
    pub fn state_dir(&self) -> Option<std::path::PathBuf> {
        self.own.as_ref().map(OwnState::state_dir)
    }
}

impl Deref for Converge {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl DerefMut for Converge {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

/// Puts the binary under test into `dir` (a chroot's or container's tree) race-free, see
/// [`copy_file`]; returns the path of the copy.
pub fn install_binary(dir: &Path) -> std::path::PathBuf {
    let dst = dir.join("converge");
    copy_file(Path::new(BIN), &dst);
    dst
}
