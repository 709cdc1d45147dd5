//! A private, writable copy of the cached rootfs for one test, entered with
//! chroot(8). Cheap (an overlay mount), so use one per test.

use std::path::Path;
use std::process::{Command, Output};

use super::overlay::Overlay;
use super::rootfs::debian_rootfs;
use super::tools::{output_text, require_tool};

/// An overlay of the Debian rootfs that a test may modify freely.
pub struct Chroot {
    overlay: Overlay,
}

impl Chroot {
    /// Mounts a fresh overlay of the cached rootfs (building it if needed).
    pub fn new() -> Chroot {
        require_tool("chroot");
        Chroot {
            overlay: Overlay::mount(debian_rootfs()),
        }
    }

    /// The chroot's root directory as seen from the host.
    pub fn path(&self) -> &Path {
        self.overlay.merged()
    }

    /// Every path the chroot changed since it was made (the overlay's upper layer), sorted.
    pub fn changed(&self) -> Vec<std::path::PathBuf> {
        fn walk(dir: &Path, up: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                out.push(Path::new("/").join(p.strip_prefix(up).unwrap()));
                if e.file_type().unwrap().is_dir() {
                    walk(&p, up, out);
                }
            }
        }
        let up = self.overlay.scratch().join("up");
        let mut out = Vec::new();
        walk(&up, &up, &mut out);
        out.sort();
        out
    }

    /// A Command that runs `cmd` inside the chroot with a clean,
    /// non-interactive environment; add env, stdin etc. before spawning.
    pub fn command(&self, cmd: &[&str]) -> Command {
        assert!(!cmd.is_empty(), "Chroot needs a command");
        let mut c = Command::new("chroot");
        c.arg(self.path()).args(cmd);
        // The host environment (cargo's vars, odd PATHs, locales missing in
        // minbase) would leak in and make apt/dpkg behave differently.
        c.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Runs `cmd` inside the chroot and collects its output.
    pub fn run(&self, cmd: &[&str]) -> Output {
        self.command(cmd)
            .output()
            .unwrap_or_else(|e| panic!("failed to spawn chroot {cmd:?}: {e}"))
    }

    /// Like `run`, but panics with the output unless it succeeds; returns stdout.
    pub fn run_ok(&self, cmd: &[&str]) -> String {
        let out = self.run(cmd);
        assert!(
            out.status.success(),
            "in chroot {}: {cmd:?} failed\n{}",
            self.path().display(),
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell script inside the chroot.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }
}

impl Default for Chroot {
    fn default() -> Self {
        Chroot::new()
    }
}
