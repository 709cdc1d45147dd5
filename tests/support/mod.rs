//! Shared helpers that give integration tests real environments: a cached
//! Debian rootfs, overlay chroots, booted systemd containers, a local apt
//! repository, a throwaway nginx and network namespaces.
//!
//! Everything here needs root and the host tools from `scripts/test-deps`.
//!
//! ```ignore
//! mod support;
//! use support::*;
//!
//! let ch = Chroot::new(); // overlay of the cached bookworm rootfs
//! let repo = AptRepo::build(&tmp.join("repo"), &[("cfgtest", "1.0-1")]);
//! repo.add_to(&ch);
//! ch.run_ok(&["apt-get", "install", "-y", "cfgtest=1.0-1"]);
//!
//! let ct = Container::boot("svc"); // real systemd, ~0.4 s
//! let bin = ct.share(Path::new(env!("CARGO_BIN_EXE_converge")));
//! ct.exec_ok(&[&bin, "apply"]);
//! ```
#![allow(dead_code, unused_imports)]

pub mod apt_repo;
pub mod chroot;
pub mod container;
pub mod netns;
pub mod nginx;
pub mod overlay;
pub mod rootfs;
pub mod sandbox;
pub mod stale;
pub mod steps;
pub mod tools;

pub use apt_repo::{AptRepo, Deb};
pub use chroot::Chroot;
pub use container::Container;
pub use netns::{in_netns, in_netns_sh, NetNs};
pub use nginx::Nginx;
pub use overlay::Overlay;
pub use rootfs::debian_rootfs;
pub use sandbox::Sandbox;
pub use steps::Step;
pub use tools::{
    copy_file, json_changes, output_text, require_root, require_tool, run_ok, OwnState,
};
