//! The resource kinds: one list, from which the names, id parsing and the planner's
//! dispatch derive. A new kind added here makes the compiler point at every `match` that
//! must learn about it.

use std::fmt;

/// Declares [`Kind`] with each variant's name, in the order a role's declarations are
/// planned (which is also the order `after` errors list them).
macro_rules! kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// What a resource is: the part of its id before the colon.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Kind {
            $($(#[$doc])* $variant,)+
        }

        impl Kind {
            /// Every kind, in planning order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)+];

            /// The name used in ids and roles, e.g. `file`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)+
                }
            }
        }
    };
}

kinds! {
    /// `[[file]]`, and the files converge writes itself (the sysctl drop-in, unit files).
    File => "file",
    /// `[[directory]]`.
    Directory => "directory",
    /// `[[symlink]]`.
    Symlink => "symlink",
    /// `[[absent]]`.
    Absent => "absent",
    /// One key of `[sysctl]`.
    Sysctl => "sysctl",
    /// `[[nftables]]`: one table of the live ruleset.
    Nftables => "nftables",
    /// `[[group]]`.
    Group => "group",
    /// `[[user]]`.
    User => "user",
    /// `[[exec]]`.
    Exec => "exec",
    /// `[[service]]`.
    Service => "service",
    /// `[[package]]`.
    Package => "package",
    /// `[[kernel_module]]`.
    KernelModule => "kernel_module",
    /// `[[health]]`: reported like a resource, but checked after the run, not converged.
    Health => "health",
}

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
