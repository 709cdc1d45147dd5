//! The common shape of Chroot and Container, so helpers such as AptRepo work
//! with either.

use std::path::Path;
use std::process::Output;

/// Something with a root directory visible from the host and a way to run
/// commands inside it.
pub trait Sandbox {
    /// The sandbox's root directory as seen from the host.
    fn root_dir(&self) -> &Path;
    /// Runs a command inside the sandbox.
    fn run_in(&self, cmd: &[&str]) -> Output;
}

impl Sandbox for super::chroot::Chroot {
    fn root_dir(&self) -> &Path {
        self.path()
    }
    fn run_in(&self, cmd: &[&str]) -> Output {
        self.run(cmd)
    }
}

impl Sandbox for super::container::Container {
    fn root_dir(&self) -> &Path {
        self.root()
    }
    fn run_in(&self, cmd: &[&str]) -> Output {
        self.exec(cmd)
    }
}
