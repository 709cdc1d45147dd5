//! rpm's version strings as converge writes them, `[EPOCH:]VERSION-RELEASE[.ARCH]`, and rpm's
//! own order of them (rpmvercmp), so that comparing two versions needs no process.

use std::cmp::Ordering;

/// The architectures an rpm file name or NEVRA ends in, to tell `1.0-1.el9.x86_64` (with an
/// arch) from `1.0-1.el9` (release `1.el9`).
const ARCHES: &[&str] = &[
    "noarch",
    "x86_64",
    "i686",
    "i586",
    "i386",
    "aarch64",
    "ppc64le",
    "ppc64",
    "s390x",
    "armv7hl",
    "armv7hnl",
    "armv6hl",
    "riscv64",
    "loongarch64",
    "src",
];

/// One version, split into its parts; the epoch, release and arch are optional as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Evr<'a> {
    /// The epoch, when the text named one.
    pub epoch: Option<u64>,
    /// The upstream version.
    pub version: &'a str,
    /// The packaging release.
    pub release: Option<&'a str>,
    /// The architecture, when the text ended in one.
    pub arch: Option<&'a str>,
}

impl<'a> Evr<'a> {
    /// Splits `[EPOCH:]VERSION[-RELEASE][.ARCH]`.
    pub fn parse(text: &'a str) -> Evr<'a> {
        let (rest, arch) = match text.rsplit_once('.') {
            Some((rest, arch)) if ARCHES.contains(&arch) && rest.contains('-') => {
                (rest, Some(arch))
            }
            _ => (text, None),
        };
        let (epoch, rest) = match rest.split_once(':') {
            Some((e, r)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().ok(), r)
            }
            _ => (None, rest),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v, Some(r)),
            None => (rest, None),
        };
        Evr {
            epoch,
            version,
            release,
            arch,
        }
    }

    /// Whether `self`, a full version as the rpm database or a repository gives it, is what
    /// `wanted`, as a role writes it, names: the parts `wanted` leaves out match anything,
    /// the way dnf reads `name-1.0-1` (any epoch, any arch).
    pub fn satisfies(&self, wanted: &Evr<'_>) -> bool {
        wanted.epoch.is_none_or(|e| self.epoch.unwrap_or(0) == e)
            && self.version == wanted.version
            && wanted.release.is_none_or(|r| self.release == Some(r))
            && wanted.arch.is_none_or(|a| self.arch == Some(a))
    }

    /// rpm's order of two versions: epoch, then version, then release (arch is not part of
    /// the order).
    pub fn cmp_version(&self, other: &Evr<'_>) -> Ordering {
        self.epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| rpmvercmp(self.version, other.version))
            .then_with(|| match (self.release, other.release) {
                (Some(a), Some(b)) => rpmvercmp(a, b),
                _ => Ordering::Equal,
            })
    }
}

/// A package name as dnf takes it, split from the architecture it ends in, if any:
/// `glibc.i686` is glibc for i686, `python3.11` is a name.
pub(crate) fn split_name_arch(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((base, arch)) if !base.is_empty() && ARCHES.contains(&arch) => (base, Some(arch)),
        _ => (name, None),
    }
}

/// The form converge shows and dnf accepts: the epoch only when it is not 0.
pub(crate) fn display(epoch: u64, version: &str, release: &str, arch: &str) -> String {
    if epoch == 0 {
        format!("{version}-{release}.{arch}")
    } else {
        format!("{epoch}:{version}-{release}.{arch}")
    }
}

/// rpm's rpmvercmp: alternating runs of digits (compared as numbers) and letters (compared
/// as text), other characters separating them; `~` sorts before anything, even the end, and
/// `^` after the end but before anything else.
pub(crate) fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    let separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while one.first().is_some_and(separator) {
            one = &one[1..];
        }
        while two.first().is_some_and(separator) {
            two = &two[1..];
        }
        match (one.first(), two.first()) {
            (Some(b'~'), Some(b'~')) => {
                one = &one[1..];
                two = &two[1..];
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            (Some(b'^'), Some(b'^')) => {
                one = &one[1..];
                two = &two[1..];
                continue;
            }
            (None, Some(b'^')) => return Ordering::Less,
            (Some(b'^'), None) => return Ordering::Greater,
            (Some(b'^'), _) => return Ordering::Less,
            (_, Some(b'^')) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(_), Some(_)) => {}
        }
        let numeric = one[0].is_ascii_digit();
        let class = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let len1 = one.iter().take_while(|c| class(c)).count();
        let len2 = two.iter().take_while(|c| class(c)).count();
        let (seg1, seg2) = (&one[..len1], &two[..len2]);
        if seg2.is_empty() {
            // A number against letters: the number is newer.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let order = if numeric {
            let trim = |s: &[u8]| -> usize { s.iter().take_while(|c| **c == b'0').count() };
            let (n1, n2) = (&seg1[trim(seg1)..], &seg2[trim(seg2)..]);
            n1.len().cmp(&n2.len()).then_with(|| n1.cmp(n2))
        } else {
            seg1.cmp(seg2)
        };
        if order != Ordering::Equal {
            return order;
        }
        one = &one[len1..];
        two = &two[len2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpmvercmp_agrees_with_rpm() {
        // Cases from rpm's own test suite (tests/rpmvercmp.at).
        let cases = [
            ("1.0", "1.0", 0),
            ("1.0", "2.0", -1),
            ("2.0.1", "2.0", 1),
            ("2.0.1a", "2.0.1", 1),
            ("5.5p1", "5.5p10", -1),
            ("10xyz", "10.1xyz", -1),
            ("xyz10", "xyz10.1", -1),
            ("1.0aa", "1.0a", 1),
            ("10", "9", 1),
            ("010", "10", 0),
            ("1b", "1.0", -1),
            ("a+", "a_", 0),
            ("1.0~rc1", "1.0", -1),
            ("1.0~rc1", "1.0~rc2", -1),
            ("1.0~rc1~git123", "1.0~rc1", -1),
            ("1.0^", "1.0", 1),
            ("1.0^git1", "1.0", 1),
            ("1.0^git1", "1.01", -1),
            ("1.0^git1~pre", "1.0^git1", -1),
            ("1.0~rc1^git1", "1.0~rc1", 1),
        ];
        for (a, b, want) in cases {
            assert_eq!(rpmvercmp(a, b) as i32, want, "{a} vs {b}");
            assert_eq!(rpmvercmp(b, a) as i32, -want, "{b} vs {a}");
        }
    }

    #[test]
    fn versions_split_with_and_without_epoch_and_arch() {
        let e = Evr::parse("2:1.0-1.el9.x86_64");
        assert_eq!(
            e,
            Evr {
                epoch: Some(2),
                version: "1.0",
                release: Some("1.el9"),
                arch: Some("x86_64"),
            }
        );
        assert_eq!(Evr::parse("1.0-1.el9").arch, None);
        assert_eq!(Evr::parse("1.0-1.el9").release, Some("1.el9"));
        assert_eq!(Evr::parse("1.0").release, None);
    }

    #[test]
    fn a_pin_matches_what_it_names_and_leaves_the_rest_open() {
        let full = Evr::parse("1:1.1.1k-9.el8.x86_64");
        assert!(full.satisfies(&Evr::parse("1.1.1k-9.el8")));
        assert!(full.satisfies(&Evr::parse("1:1.1.1k-9.el8")));
        assert!(full.satisfies(&Evr::parse("1:1.1.1k-9.el8.x86_64")));
        assert!(!full.satisfies(&Evr::parse("0:1.1.1k-9.el8")));
        assert!(!full.satisfies(&Evr::parse("1.1.1k-9.el8.i686")));
        assert!(!full.satisfies(&Evr::parse("1.1.1k-10.el8")));
        assert!(Evr::parse("1.0-1.noarch").satisfies(&Evr::parse("0:1.0-1")));
    }

    #[test]
    fn the_epoch_outranks_the_version() {
        let order = |a: &str, b: &str| Evr::parse(a).cmp_version(&Evr::parse(b));
        assert_eq!(order("1:1.0-1.noarch", "2.0-1.noarch"), Ordering::Greater);
        assert_eq!(order("2.0-1.noarch", "1.0-1.noarch"), Ordering::Greater);
        assert_eq!(order("1.0-2.noarch", "1.0-10.noarch"), Ordering::Less);
        assert_eq!(order("1.0-1.noarch", "1.0-1.x86_64"), Ordering::Equal);
    }
}
