//! The version `converge --version` prints. Shared with build.rs, which bakes it in.

/// The environment variable a package build sets to its full package version.
pub const PACKAGE_VERSION_VAR: &str = "CONVERGE_PACKAGE_VERSION";

/// `0.1.0`, or `0.1.0 (Debian 0.1.0-1)` for a binary built for a package: the package
/// revision tells apart builds of the same source. Refuses a package version that is not a
/// Debian version (`[epoch:]upstream[-revision]` characters only).
pub fn describe(crate_version: &str, package: Option<&str>) -> Result<String, String> {
    let Some(package) = package.filter(|p| !p.is_empty()) else {
        return Ok(crate_version.to_owned());
    };
    let valid = package.starts_with(|c: char| c.is_ascii_digit())
        && package
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-:".contains(c));
    if !valid {
        return Err(format!(
            "{PACKAGE_VERSION_VAR}={package:?} is not a Debian version \
             (expected e.g. 0.1.0-1: a digit, then letters, digits and . + ~ - :)"
        ));
    }
    Ok(format!("{crate_version} (Debian {package})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_build_names_its_package_version() {
        assert_eq!(
            describe("0.1.0", Some("0.1.0-1")).unwrap(),
            "0.1.0 (Debian 0.1.0-1)"
        );
        assert_eq!(
            describe("0.1.0", Some("1:0.1.0-2~bpo12+1")).unwrap(),
            "0.1.0 (Debian 1:0.1.0-2~bpo12+1)"
        );
    }

    #[test]
    fn a_plain_build_prints_the_crate_version() {
        assert_eq!(describe("0.1.0", None).unwrap(), "0.1.0");
        assert_eq!(describe("0.1.0", Some("")).unwrap(), "0.1.0");
    }

    #[test]
    fn a_package_version_that_is_not_one_is_refused() {
        for bad in ["0.1.0 -1", "v0.1.0", "0.1.0\n", "0.1.0-1)"] {
            let err = describe("0.1.0", Some(bad)).unwrap_err();
            assert!(err.contains("is not a Debian version"), "{err}");
        }
    }
}
