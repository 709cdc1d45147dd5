//! The resource kinds: ONE list, [`every_kind!`], from which [`Kind`] (names, id parsing),
//! [`AnyResource`](super::AnyResource) (the closed set of resource types the plan, the engine
//! and the plan cache hold) and the planner's dispatch all derive. A new kind is one line
//! here; the compiler then points at everything it must still answer.

use std::fmt;

/// Hands the list of every kind to `$then!`, which declares what derives from it.
///
/// Each line: the [`Kind`] variant, its name in ids and roles, the planner method of
/// `plan::from_role::Builder` that plans a role's declarations of it, and the resource types
/// of that kind (the [`AnyResource`](super::AnyResource) variants). The order is the order a
/// role's declarations are planned (which is also the order `after` errors list them); the
/// order of the resource types is also their tag in a stored plan, which only the build
/// that stored it reads (the plan cache's key holds the build id).
macro_rules! every_kind {
    ($then:ident) => {
        $then! {
            /// `[[file]]`, and the files converge writes itself (the sysctl drop-in, unit files).
            File => "file", planned by files, [
                /// `[[file]]`, unit files.
                File(crate::resource::file::FileResource),
                /// The sysctl drop-in: a file of its own type, whose content is the run's keys.
                SysctlConf(crate::resource::sysctl_conf::SysctlConfResource)
            ];
            /// `[[directory]]`.
            Directory => "directory", planned by directories, [
                /// `[[directory]]`.
                Directory(crate::resource::directory::DirectoryResource)
            ];
            /// `[[symlink]]`.
            Symlink => "symlink", planned by symlinks, [
                /// `[[symlink]]`.
                Symlink(crate::resource::symlink::SymlinkResource)
            ];
            /// `[[absent]]`.
            Absent => "absent", planned by absents, [
                /// `[[absent]]`.
                Absent(crate::resource::absent::AbsentResource)
            ];
            /// One key of `[sysctl]`.
            Sysctl => "sysctl", planned by sysctl, [
                /// One `[sysctl]` key.
                Sysctl(crate::resource::sysctl::SysctlResource)
            ];
            /// `[[nftables]]`: one table of the live ruleset.
            Nftables => "nftables", planned by nftables, [
                /// `[[nftables]]`.
                Nftables(crate::resource::nftables::NftablesResource)
            ];
            /// `[[group]]`.
            Group => "group", planned by groups, [
                /// `[[group]]`.
                Group(crate::resource::group::GroupResource)
            ];
            /// `[[user]]`.
            User => "user", planned by users, [
                /// `[[user]]`.
                User(crate::resource::user::UserResource)
            ];
            /// `[[exec]]`.
            Exec => "exec", planned by execs, [
                /// `[[exec]]`.
                Exec(crate::resource::exec::ExecResource)
            ];
            /// `[[service]]`.
            Service => "service", planned by services, [
                /// `[[service]]`.
                Service(crate::resource::service::ServiceResource)
            ];
            /// `[[package]]`.
            Package => "package", planned by packages, [
                /// `[[package]]`.
                Package(crate::resource::package::PackageResource)
            ];
            /// `[[kernel_module]]`.
            KernelModule => "kernel_module", planned by kernel_modules, [
                /// `[[kernel_module]]`.
                KernelModule(crate::resource::kernel_module::KernelModuleResource)
            ];
            /// `[[health]]`: reported like a resource, but checked after the run, not converged.
            Health => "health", planned by health, [];
            /// One key of `[sysfs]`, and the two boot files that keep them (ids `file:...`).
            Sysfs => "sysfs", planned by sysfs, [
                /// One `[sysfs]` key.
                Sysfs(crate::resource::sysfs::SysfsResource),
                /// The tmpfiles.d or udev rules file holding the run's keys.
                SysfsBoot(crate::resource::sysfs_boot::SysfsBootResource)
            ];
        }
    };
}
pub(crate) use every_kind;

/// Declares [`Kind`] from [`every_kind!`]'s list.
macro_rules! declare_kind {
    ($($(#[$doc:meta])* $kind:ident => $name:literal, planned by $planner:ident,
        [$($(#[$vdoc:meta])* $variant:ident($ty:path)),*];)+) => {
        /// What a resource is: the part of its id before the colon.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($(#[$doc])* $kind,)+
        }

        impl Kind {
            /// Every kind, in planning order.
            pub(crate) const ALL: &'static [Kind] = &[$(Kind::$kind,)+];

            /// The name used in ids and roles, e.g. `file`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$kind => $name,)+
                }
            }
        }
    };
}

every_kind!(declare_kind);

impl Kind {
    /// The kind named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Every kind's name, comma-separated, for messages.
    pub fn names() -> String {
        Kind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for &k in Kind::ALL {
            assert_eq!(Kind::parse(k.name()), Some(k));
        }
        assert_eq!(Kind::parse("files"), None);
        assert!(Kind::names().starts_with("file, directory, symlink"));
    }
}
