//! The test harness: how a test starts the binary under test (`cli`: an agent config and
//! state dir of its own every time), a scenario in a few lines (`Project`: temp source tree,
//! temp root), JSON reports as redacted snapshots (`snapshot`), and real environments: a
//! cached Debian rootfs, overlay chroots, booted systemd containers, a local apt repository,
//! a throwaway nginx, a Prometheus scraping a simulated fleet and network namespaces.
//!
//! Two tiers. The fast tier needs no root: `Project`, `converge`, `snapshot`. The
//! environments need root and the host tools from `scripts/test-deps`; a test that uses one
//! is marked `#[ignore = "needs root (container tier, scripts/test)"]`, so a plain
//! `cargo test` lists it as ignored with that reason, and `scripts/test` runs it with
//! `--include-ignored`.
//!
//! ```ignore
//! mod support;
//! use support::*;
//!
//! let p = Project::new();
//! p.file("roles/web.toml", "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n");
//! assert_eq!(p.apply(&["web"]).code, 2);
//!
//! let ch = Chroot::new(); // overlay of the cached bookworm rootfs
//! let repo = AptRepo::build(&tmp.join("repo"), &[("cfgtest", "1.0-1")]);
//! repo.add_to(&ch);
//! ch.run_ok(&["apt-get", "install", "-y", "cfgtest=1.0-1"]);
//!
//! let ct = Container::boot("svc"); // real systemd, ~0.4 s
//! ct.write_source(&[("roles/svc.toml", "[[service]]\nname = \"nginx\"\n")]);
//! let out = ct.converge("apply", "svc", &[]); // the binary under test, inside
//! ```
#![allow(dead_code, unused_imports)]

pub mod apt_repo;
pub mod chroot;
pub mod cli;
pub mod container;
pub mod kernel;
pub mod netns;
pub mod nginx;
pub mod overlay;
pub mod project;
pub mod prometheus;
pub mod rootfs;
pub mod rpm_root;
pub mod sandbox;
pub mod snapshot;
pub mod stale;
pub mod steps;
pub mod tools;

pub use apt_repo::{build_deb, AptRepo, Deb};
pub use chroot::Chroot;
pub use cli::{converge, converge_via, converge_with, install_binary, Converge, Run, BIN};
pub use container::Container;
pub use netns::{in_netns, in_netns_sh, NetNs};
pub use nginx::Nginx;
pub use overlay::Overlay;
pub use project::{Project, FACTS};
pub use prometheus::Prometheus;
pub use rootfs::debian_rootfs;
pub use rpm_root::{Rpm, RpmRepo, RpmRoot};
pub use sandbox::Sandbox;
pub use snapshot::redacted_json;
pub use steps::{Namespaces, Step};
pub use tools::{
    copy_file, json_changes, output_text, require_root, require_tool, run_ok, wait_until,
    write_tree, OwnState,
};
