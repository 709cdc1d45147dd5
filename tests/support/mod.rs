//! Shared helpers that give integration tests real environments: a cached
//! Debian rootfs, overlay chroots, booted systemd containers, a local apt
//! repository, a throwaway nginx and network namespaces.
//!
//! Everything here needs root and the host tools from `scripts/test-deps`.
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
pub mod tools;

pub use apt_repo::{AptRepo, Deb};
pub use chroot::Chroot;
pub use container::Container;
pub use netns::{in_netns, in_netns_sh};
pub use nginx::Nginx;
pub use overlay::Overlay;
pub use rootfs::debian_rootfs;
pub use sandbox::Sandbox;
pub use tools::{output_text, require_root, require_tool, run_ok};
