//! `manifest.json`: the list of files in a bundle with their sha256 and size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::error::BundleError;

/// The only manifest format this code reads and writes.
pub(crate) const FORMAT: u32 = 1;

/// Top-level entries a bundle may contain; everything the core reads lives under these.
pub(crate) const TOP_LEVEL_DIRS: [&str; 3] = ["roles", "templates", "files"];
/// Top-level regular files a bundle may contain.
pub(crate) const TOP_LEVEL_FILES: [&str; 1] = ["nodes.toml"];

/// Hard cap on a manifest body: far above any real bundle, low enough to bound memory.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// How far a manifest's `created` may lie ahead of the reader's clock. Beyond it the
/// publisher's clock (or the host's) is wrong: a host refuses such a manifest, since it would
/// become a replay floor no genuine publish could pass, and `publish` does not continue the
/// sequence from it.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: u32,
    /// RFC 3339 UTC time of publication. Covered by the signature, so `sync` uses it to
    /// refuse a manifest older than the bundle it already has (replay or rollback).
    pub created: String,
    /// What the publisher said this bundle is (`publish --message`: a change summary or a
    /// VCS revision). Covered by the signature; written only when given, so a bundle
    /// without one stays readable by hosts that predate the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339 UTC time after which hosts refuse this manifest (`publish --expires`), as
    /// apt's `Valid-Until`: a mirror that stops updating, or someone replaying an old signed
    /// manifest, cannot hold a fleet on it forever. Covered by the signature; written only
    /// when given, like `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Bundle-relative path (with `/`) → content.
    pub files: BTreeMap<String, FileEntry>,
}

/// The longest `message` a manifest may carry: it ends up in log lines and metric labels.
pub(crate) const MAX_MESSAGE_CHARS: usize = 200;

/// Checks a publish message: one line of at most [`MAX_MESSAGE_CHARS`] characters, with no
/// control characters (it is shown in journal lines, history tables and metric labels).
pub fn check_message(message: &str) -> Result<(), String> {
    if message.trim().is_empty() {
        return Err("the message is empty".into());
    }
    if let Some(c) = message.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the message contains the control character {c:?}; it must be one line of text"
        ));
    }
    let chars = message.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(format!(
            "the message is {chars} characters long, at most {MAX_MESSAGE_CHARS} are allowed"
        ));
    }
    Ok(())
}

/// What one file in the bundle must contain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Lowercase hex sha256 of the content; also the object's name.
    pub sha256: String,
    /// Content length in bytes.
    pub size: u64,
}

impl Manifest {
    /// Parse and validate manifest bytes; `origin` names where they came from in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Manifest, BundleError> {
        let bad = |reason: String| BundleError::ManifestMalformed {
            url: origin.to_string(),
            reason,
        };
        // Duplicate keys would silently collapse in a map; reject them so what was
        // signed is exactly what gets materialised.
        let raw: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        check_no_duplicate_file_keys(bytes).map_err(bad)?;
        let manifest: Manifest =
            serde_json::from_value(raw).map_err(|e| bad(format!("unexpected shape: {e}")))?;
        manifest.validate().map_err(bad)?;
        Ok(manifest)
    }

    /// A manifest for `files`, stamped with the current time.
    pub fn new(files: BTreeMap<String, FileEntry>) -> Manifest {
        Manifest::next_after(files, None, SystemTime::now())
    }

    /// A manifest for `files` that sorts strictly after `previous` (the manifest it
    /// replaces in the same directory): `created` is `now` with microseconds, or one
    /// microsecond after `previous` when the clock has not moved past it. Hosts refuse a
    /// manifest not newer than their current one, so two publishes in one second stay
    /// ordered and republishing unchanged content still moves a host. A `previous` more than
    /// [`MAX_CLOCK_SKEW`] ahead of `now` was stamped by a wrong clock; continuing after it
    /// would keep every later publish in the future, where hosts refuse it.
    pub(crate) fn next_after(
        files: BTreeMap<String, FileEntry>,
        previous: Option<&Manifest>,
        now: SystemTime,
    ) -> Manifest {
        let created = next_created(previous.and_then(|p| p.created_at().ok()), now);
        Manifest {
            format: FORMAT,
            created: rfc3339_micros(created),
            message: None,
            expires: None,
            files,
        }
    }

    /// Sets `expires` to `valid_for` after `created` (none without it).
    pub fn set_validity(&mut self, valid_for: Option<Duration>) {
        self.expires = valid_for
            .zip(self.created_at().ok())
            .map(|(d, created)| rfc3339_micros(created + d));
    }

    /// How long after `created` this manifest expires, when it does.
    pub fn validity(&self) -> Option<Duration> {
        validity(&self.created, self.expires.as_deref())
    }

    /// The bytes published as `manifest.json` (pretty, so admins can read and diff them).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("manifest serialises");
        bytes.push(b'\n');
        bytes
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} is not supported, expected {FORMAT}",
                self.format
            ));
        }
        for (path, entry) in &self.files {
            validate_path(path).map_err(|e| format!("file {path:?}: {e}"))?;
            if !is_sha256_hex(&entry.sha256) {
                return Err(format!(
                    "file {path:?}: sha256 {:?} is not 64 lowercase hex digits",
                    entry.sha256
                ));
            }
        }
        // A path that is also a directory of another path cannot be materialised.
        for path in self.files.keys() {
            for (i, _) in path.match_indices('/') {
                let dir = &path[..i];
                if self.files.contains_key(dir) {
                    return Err(format!("file {dir:?} is also a directory of {path:?}"));
                }
            }
        }
        if let Some(message) = &self.message {
            check_message(message)?;
        }
        // Checked last so the messages above stay the first problem reported. A time that
        // does not parse could not be ordered against the current bundle's.
        check_dates(&self.created, self.expires.as_deref())
    }

    /// `created` as a time.
    pub fn created_at(&self) -> Result<SystemTime, String> {
        parse_time("created", &self.created)
    }
}

/// `text`, the RFC 3339 time of `field`, as a time.
pub(crate) fn parse_time(field: &str, text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(text)
        .map_err(|e| format!("{field} {text:?} is not an RFC 3339 UTC time: {e}"))
}

/// Checks the dates of a signed file: `created` is a time, and `expires`, when set, a
/// later one.
pub(crate) fn check_dates(created: &str, expires: Option<&str>) -> Result<(), String> {
    let created_at = parse_time("created", created)?;
    if let Some(expires) = expires {
        if parse_time("expires", expires)? <= created_at {
            return Err(format!("expires {expires} is not after created {created}"));
        }
    }
    Ok(())
}

/// How long after `created` a signed file expires, when it does and both dates parse.
pub(crate) fn validity(created: &str, expires: Option<&str>) -> Option<Duration> {
    let created = parse_time("created", created).ok()?;
    parse_time("expires", expires?)
        .ok()?
        .duration_since(created)
        .ok()
}

/// The `created` time of a signed file (a manifest, a rollout file) that replaces one created
/// at `previous`: `now`, or one microsecond after `previous` when the clock has not moved
/// past it. A `previous` more than [`MAX_CLOCK_SKEW`] ahead of `now` came from a wrong clock
/// and is not continued.
pub(crate) fn next_created(previous: Option<SystemTime>, now: SystemTime) -> SystemTime {
    let after = previous
        .filter(|prev| *prev <= now + MAX_CLOCK_SKEW)
        .map(|prev| prev + Duration::from_micros(1));
    match after {
        Some(after) if after > now => after,
        _ => now,
    }
}

/// Check that a bundle path is relative, normalised and under a known top-level entry.
///
/// The same rule guards `publish` (what we write) and `sync` (what a server may make us
/// write), so a manifest can never direct a file outside the bundle dir.
pub(crate) fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("control character in path".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err("empty path component (double or trailing '/')".into()),
            "." | ".." => return Err(format!("{part:?} component")),
            _ => {}
        }
    }
    let top = parts[0];
    let ok = if parts.len() == 1 {
        TOP_LEVEL_FILES.contains(&top)
    } else {
        TOP_LEVEL_DIRS.contains(&top)
    };
    if !ok {
        return Err(format!(
            "not under a known top-level entry (expected {}/..., or {})",
            TOP_LEVEL_DIRS.join("/..., "),
            TOP_LEVEL_FILES.join(", ")
        ));
    }
    Ok(())
}

/// True for exactly 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Find a key repeated inside the `"files"` object by re-reading it with a
/// visitor that keeps every key.
fn check_no_duplicate_file_keys(bytes: &[u8]) -> Result<(), String> {
    use serde::de::{IgnoredAny, MapAccess, Visitor};
    use std::fmt;

    struct Files;
    impl<'de> Visitor<'de> for Files {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::BTreeSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                if !seen.insert(key.clone()) {
                    return Err(serde::de::Error::custom(format!("duplicate file {key:?}")));
                }
            }
            Ok(())
        }
    }
    struct FilesField;
    impl<'de> serde::Deserialize<'de> for FilesField {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Files).map(|_| FilesField)
        }
    }
    struct Top;
    impl<'de> Visitor<'de> for Top {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                if key == "files" {
                    map.next_value::<FilesField>()?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde::Deserializer::deserialize_map(&mut de, Top).map_err(|e| e.to_string())
}

/// `t` as RFC 3339 UTC with microseconds (`2026-01-01T00:00:00.000001Z`): the precision that
/// orders publishes made within one second. A time outside what RFC 3339 can write (before
/// 1970 or after 9999, from a wrong clock or a damaged record) is written as the nearest end.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::new(253_402_300_799, 999_999_999);
    humantime::format_rfc3339_micros(t.clamp(UNIX_EPOCH, last)).to_string()
}

/// Join a validated `/`-separated bundle path onto a directory.
pub(crate) fn join_rel(base: &Path, rel: &str) -> PathBuf {
    rel.split('/').fold(base.to_path_buf(), |p, c| p.join(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const H: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Result<Manifest, String> {
        Manifest::parse(s.as_bytes(), "test://m").map_err(|e| e.to_string())
    }

    fn with_files(files: &str) -> String {
        format!(r#"{{"format":1,"created":"2026-01-01T00:00:00Z","files":{{{files}}}}}"#)
    }

    #[test]
    fn parses_a_valid_manifest() {
        let m = parse(&with_files(&format!(
            r#""roles/web.toml":{{"sha256":"{H}","size":0}},"nodes.toml":{{"sha256":"{H}","size":0}}"#
        )))
        .unwrap();
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files["roles/web.toml"].sha256, H);
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut files = BTreeMap::new();
        files.insert(
            "templates/a/b.hbs".to_string(),
            FileEntry {
                sha256: H.into(),
                size: 0,
            },
        );
        let m = Manifest::new(files);
        assert_eq!(Manifest::parse(&m.to_bytes(), "x").unwrap(), m);
    }

    #[test]
    fn a_message_is_kept_signed_and_checked() {
        let m = Manifest {
            message: Some("deploy 4f2a9c1: raise worker_connections".into()),
            ..Manifest::new(BTreeMap::new())
        };
        let bytes = m.to_bytes();
        assert!(String::from_utf8_lossy(&bytes)
            .contains(r#""message": "deploy 4f2a9c1: raise worker_connections""#));
        assert_eq!(Manifest::parse(&bytes, "x").unwrap(), m);
        // Without one, the manifest is what hosts that predate the field read.
        assert!(
            !String::from_utf8_lossy(&Manifest::new(BTreeMap::new()).to_bytes())
                .contains("message")
        );
        let two_lines =
            r#"{"format":1,"created":"2026-01-01T00:00:00Z","message":"a\nb","files":{}}"#;
        let e = parse(two_lines).unwrap_err();
        assert!(
            e.contains(
                "the message contains the control character '\\n'; it must be one line of text"
            ),
            "{e}"
        );
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert_eq!(
            check_message(&long).unwrap_err(),
            "the message is 201 characters long, at most 200 are allowed"
        );
        assert_eq!(check_message(" ").unwrap_err(), "the message is empty");
    }

    #[test]
    fn rejects_non_json() {
        let e = parse("{not json").unwrap_err();
        assert!(
            e.starts_with("test://m: malformed manifest: not JSON"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_format() {
        let e = parse(r#"{"format":2,"created":"x","files":{}}"#).unwrap_err();
        assert_eq!(
            e,
            "test://m: malformed manifest: format 2 is not supported, expected 1"
        );
    }

    #[test]
    fn rejects_missing_and_unknown_fields() {
        let e = parse(r#"{"format":1,"files":{}}"#).unwrap_err();
        assert!(e.contains("missing field `created`"), "{e}");
        let e = parse(r#"{"format":1,"created":"x","files":{},"extra":1}"#).unwrap_err();
        assert!(e.contains("unknown field `extra`"), "{e}");
    }

    #[test]
    fn rejects_bad_hashes() {
        for bad in ["abc", &H.to_uppercase(), &format!("{}g", &H[..63])] {
            let e = parse(&with_files(&format!(
                r#""roles/a.toml":{{"sha256":"{bad}","size":1}}"#
            )))
            .unwrap_err();
            assert!(e.contains("is not 64 lowercase hex digits"), "{e}");
        }
    }

    #[test]
    fn rejects_negative_or_non_integer_sizes() {
        let e = parse(&with_files(&format!(
            r#""roles/a.toml":{{"sha256":"{H}","size":-1}}"#
        )))
        .unwrap_err();
        assert!(e.contains("unexpected shape"), "{e}");
    }

    #[test]
    fn rejects_escaping_and_unknown_paths() {
        for (path, why) in [
            ("../etc/passwd", "\"..\" component"),
            ("roles/../../x", "\"..\" component"),
            ("/etc/passwd", "absolute path"),
            ("roles//a", "empty path component"),
            ("roles/./a", "\".\" component"),
            ("roles", "not under a known top-level entry"),
            ("README.md", "not under a known top-level entry"),
            ("roles/a\nb", "control character"),
            ("", "empty path"),
        ] {
            let json = with_files(&format!(
                r#"{}:{{"sha256":"{H}","size":0}}"#,
                serde_json::to_string(path).unwrap()
            ));
            let e = parse(&json).unwrap_err();
            assert!(e.contains(why), "{path:?}: {e}");
        }
    }

    #[test]
    fn rejects_duplicate_files() {
        let e = parse(&with_files(&format!(
            r#""roles/a.toml":{{"sha256":"{H}","size":0}},"roles/a.toml":{{"sha256":"{H}","size":0}}"#
        )))
        .unwrap_err();
        assert!(e.contains("duplicate file \"roles/a.toml\""), "{e}");
    }

    #[test]
    fn created_must_be_an_rfc3339_utc_time() {
        let m = parse(&with_files("")).unwrap();
        assert_eq!(
            m.created_at().unwrap(),
            UNIX_EPOCH + Duration::from_secs(1_767_225_600)
        );
        for bad in ["x", "2026-01-01", "2026-01-01T00:00:00+02:00"] {
            let e =
                parse(&format!(r#"{{"format":1,"created":"{bad}","files":{{}}}}"#)).unwrap_err();
            assert!(
                e.contains(&format!("created {bad:?} is not an RFC 3339 UTC time")),
                "{e}"
            );
        }
        // What publish writes round-trips.
        let now = UNIX_EPOCH + Duration::from_secs(1_764_075_600);
        let m = Manifest {
            created: humantime::format_rfc3339_seconds(now).to_string(),
            ..m
        };
        assert_eq!(m.created_at().unwrap(), now);
    }

    #[test]
    fn rejects_file_that_is_also_a_directory() {
        let e = parse(&with_files(&format!(
            r#""files/a":{{"sha256":"{H}","size":0}},"files/a-b":{{"sha256":"{H}","size":0}},"files/a/b":{{"sha256":"{H}","size":0}}"#
        )))
        .unwrap_err();
        assert!(
            e.contains("file \"files/a\" is also a directory of \"files/a/b\""),
            "{e}"
        );
    }

    #[test]
    fn formats_rfc3339_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_secs(1_764_075_600);
        assert_eq!(rfc3339_micros(t), "2025-11-25T13:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_micros(leap), "2000-02-29T00:00:00.000000Z");
        let t = t + Duration::from_nanos(42_999);
        assert_eq!(rfc3339_micros(t), "2025-11-25T13:00:00.000042Z");
        assert_eq!(
            humantime::parse_rfc3339(&rfc3339_micros(t)).unwrap(),
            t - Duration::from_nanos(999)
        );
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_micros(before), "1970-01-01T00:00:00.000000Z");
        let after = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339_micros(after), "9999-12-31T23:59:59.999999Z");
    }

    #[test]
    fn publishes_are_strictly_ordered_unless_the_previous_one_is_in_the_future() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_075_600);
        let first = Manifest::next_after(BTreeMap::new(), None, now);
        assert_eq!(first.created, "2025-11-25T13:00:00.000000Z");
        // Same instant (a coarse clock, or the same content republished at once).
        let second = Manifest::next_after(BTreeMap::new(), Some(&first), now);
        assert_eq!(second.created, "2025-11-25T13:00:00.000001Z");
        let later = now + Duration::from_millis(1500);
        let third = Manifest::next_after(BTreeMap::new(), Some(&second), later);
        assert_eq!(third.created, "2025-11-25T13:00:01.500000Z");
        // A previous publish by a clock a day ahead: start again from the real time.
        let future = Manifest::next_after(BTreeMap::new(), None, now + Duration::from_secs(86_400));
        let fixed = Manifest::next_after(BTreeMap::new(), Some(&future), now);
        assert_eq!(fixed.created, "2025-11-25T13:00:00.000000Z");
        // Within the tolerated skew the sequence continues.
        let ahead = Manifest::next_after(BTreeMap::new(), None, now + Duration::from_secs(60));
        let next = Manifest::next_after(BTreeMap::new(), Some(&ahead), now);
        assert_eq!(next.created, "2025-11-25T13:01:00.000001Z");
    }
}
