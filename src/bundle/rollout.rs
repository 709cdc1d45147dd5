//! `rollout.json`: which hosts converge a candidate bundle instead of the stable one.
//!
//! A published bundle dir with a rollout in progress:
//! ```text
//! objects/<sha256>                    shared by both bundles
//! manifest.json (+ .minisig)          the stable bundle; agents that know no rollout read it
//! candidate/manifest.json (+ .minisig) the candidate bundle (`publish --candidate`)
//! rollout.json.minisig                signature of rollout.json (written first)
//! rollout.json                        {"format":1,"created":..,"expires":..,"stable":ID,
//!                                      "candidate":ID,"percent":10,"halted":false}
//! ```
//! Each host draws a [`Bucket`] in [0, 100) from its machine id and the candidate's id, so a
//! host's bucket never changes between runs while a new candidate draws a new slice. A host
//! whose bucket (shifted by its [`Wariness`]) is below `percent` takes the candidate; every
//! other host, and every host while the rollout is halted, takes the stable bundle. The
//! rollout file is signed and ordered like a manifest (`created` strictly increases, an
//! older one is refused): a newer rollout file is what lets a host go back from a candidate
//! to a stable bundle published before it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{
    check_dates, is_sha256_hex, next_created, parse_time, rfc3339_micros, validity, MAX_CLOCK_SKEW,
};

/// Name of the rollout file at the top of a published bundle dir.
pub const ROLLOUT_FILE: &str = "rollout.json";
/// Name of the detached minisign signature of the rollout file.
pub const ROLLOUT_SIGNATURE_FILE: &str = "rollout.json.minisig";
/// Directory (in a published bundle dir) of the candidate's manifest and its signature; its
/// objects live in the shared `objects/`.
pub const CANDIDATE_DIR: &str = "candidate";
/// The only rollout file format this code reads and writes.
pub const ROLLOUT_FORMAT: u32 = 1;
/// Hard cap on a rollout file body: real ones are a few hundred bytes.
pub(crate) const MAX_ROLLOUT_BYTES: u64 = 64 * 1024;

/// The signed rollout state at the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Always [`ROLLOUT_FORMAT`].
    pub format: u32,
    /// RFC 3339 UTC time this state was written, strictly after the one it replaced. A host
    /// refuses a rollout file not newer than the last one it accepted (a replay).
    pub created: String,
    /// RFC 3339 UTC time after which hosts refuse this file (`--expires`), so a mirror that
    /// stops updating cannot keep a fleet on it forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Id of the stable bundle (`manifest.json`).
    pub stable: String,
    /// Id of the candidate bundle (`candidate/manifest.json`); `None` when no rollout is in
    /// progress (after `promote`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Share of hosts on the candidate.
    pub percent: Percent,
    /// Every host converges the stable bundle, whatever its bucket.
    #[serde(default)]
    pub halted: bool,
}

/// Which of the two bundles a host converges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// `manifest.json`.
    #[default]
    Stable,
    /// `candidate/manifest.json`.
    Candidate,
}

impl Track {
    /// The name records, metrics and messages use.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Candidate => "candidate",
        }
    }

    /// Path of this track's manifest in a published bundle dir.
    pub fn manifest_path(self) -> String {
        match self {
            Track::Stable => super::MANIFEST_FILE.to_owned(),
            Track::Candidate => format!("{CANDIDATE_DIR}/{}", super::MANIFEST_FILE),
        }
    }

    /// Path of this track's manifest signature in a published bundle dir.
    pub fn signature_path(self) -> String {
        format!("{}.minisig", self.manifest_path())
    }
}

impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A share of hosts, 0 to 100 with at most two decimals, kept in hundredths of a percent so
/// comparisons with a [`Bucket`] are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Percent(u16);

impl Percent {
    /// Every host.
    pub const ALL: Percent = Percent(10_000);

    /// `hundredths` / 100 percent; `None` above 100 %.
    pub fn from_hundredths(hundredths: u16) -> Option<Percent> {
        (hundredths <= 10_000).then_some(Percent(hundredths))
    }

    /// The share in hundredths of a percent (0..=10000).
    pub fn hundredths(self) -> u16 {
        self.0
    }

    /// Parses `10`, `12.5`, `0.25` or `10%`.
    pub fn parse(text: &str) -> Result<Percent, String> {
        let t = text.trim();
        let t = t.strip_suffix('%').unwrap_or(t).trim();
        let bad = || format!("{text:?} is not a percentage from 0 to 100 with at most 2 decimals");
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty()
            || frac.len() > 2
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || int.len() > 3
        {
            return Err(bad());
        }
        let whole: u16 = int.parse().map_err(|_| bad())?;
        let cents: u16 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(cents))
            .and_then(Percent::from_hundredths)
            .ok_or_else(bad)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, cents) = (self.0 / 100, self.0 % 100);
        match cents {
            0 => write!(f, "{whole}"),
            c if c % 10 == 0 => write!(f, "{whole}.{}", c / 10),
            c => write!(f, "{whole}.{c:02}"),
        }
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // A JSON number as people write it: 10, 12.5, 0.25.
        let n: serde_json::Number = self.to_string().parse().expect("a decimal number");
        n.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Percent, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        Percent::parse(&n.to_string()).map_err(serde::de::Error::custom)
    }
}

/// A host's place in the line for one candidate: hundredths of a percent, 0..=9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(into = "f64")]
pub struct Bucket(u16);

impl Bucket {
    /// The bucket of the host `machine_id` for the candidate `candidate_id`: sha256 of both
    /// (NUL-separated) taken modulo 10000. Fixed for a host and a candidate; independent
    /// between candidates, so each new candidate draws a new canary slice.
    pub fn of(machine_id: &str, candidate_id: &str) -> Bucket {
        let mut h = Sha256::new();
        h.update(machine_id.as_bytes());
        h.update([0]);
        h.update(candidate_id.as_bytes());
        let digest = h.finalize();
        let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        Bucket((n % 10_000) as u16)
    }

    /// The bucket moved by `wariness`: by (w − 0.5) × 200 points, clamped to [0, 99.99].
    /// 0.0 puts the host at the front of every rollout (on the candidate at any share above
    /// 0 %), 1.0 at the back (only at 100 %), 0.5 leaves it where it is.
    pub fn shifted(self, wariness: Wariness) -> Bucket {
        let shift = ((wariness.0 - 0.5) * 20_000.0).round() as i32;
        Bucket((i32::from(self.0) + shift).clamp(0, 9_999) as u16)
    }

    /// The bucket in hundredths of a percent.
    pub fn hundredths(self) -> u16 {
        self.0
    }

    /// The bucket as a percentage in [0, 100), two decimals.
    pub fn as_percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl From<Bucket> for f64 {
    fn from(b: Bucket) -> f64 {
        b.as_percent()
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// How eager a host is to take a candidate, 0.0 (first) to 1.0 (last), as Zincati's
/// `rollout_wariness`; see [`Bucket::shifted`]. Unset, a host keeps its drawn bucket.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Wariness(f64);

impl Wariness {
    /// `value` if it is in [0.0, 1.0].
    pub fn new(value: f64) -> Result<Wariness, String> {
        if (0.0..=1.0).contains(&value) {
            Ok(Wariness(value))
        } else {
            Err(format!(
                "rollout_wariness {value} is out of range: expected a number from 0.0 (takes candidates first) to 1.0 (last)"
            ))
        }
    }

    /// The value, 0.0 to 1.0.
    pub fn value(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Wariness {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Wariness, D::Error> {
        Wariness::new(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a host decided for one rollout file: its track, and the bucket that decided it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// The bundle the host converges.
    pub track: Track,
    /// The id the rollout file names for that track.
    pub bundle: String,
    /// The candidate named by the rollout file, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The host's bucket for the candidate (after its wariness); `None` without a candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Bucket>,
    /// The wariness that shifted the bucket, when one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wariness: Option<Wariness>,
    /// The share of hosts the rollout file puts on the candidate.
    pub percent: Percent,
    /// Whether the rollout is halted.
    pub halted: bool,
    /// `created` of the rollout file.
    pub rollout_created: String,
}

impl Rollout {
    /// Parse and validate rollout file bytes; `Err` says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Rollout, String> {
        let rollout: Rollout =
            serde_json::from_slice(bytes).map_err(|e| format!("not a rollout file: {e}"))?;
        rollout.validate()?;
        Ok(rollout)
    }

    /// A rollout state that replaces `previous` (the rollout file it replaces, if any):
    /// `created` is now, or just after `previous` when the clock has not moved past it.
    /// `expires` is `valid_for` after `created` when given, else as long after `created` as
    /// `previous`'s was (a rollout signed with an expiry keeps one).
    pub fn next(
        previous: Option<&Rollout>,
        stable: String,
        candidate: Option<String>,
        percent: Percent,
        halted: bool,
        valid_for: Option<Duration>,
        now: SystemTime,
    ) -> Rollout {
        let prev_created = previous.and_then(|p| p.created_at().ok());
        let created = next_created(prev_created, now);
        let valid_for = valid_for.or_else(|| previous.and_then(Rollout::validity));
        Rollout {
            format: ROLLOUT_FORMAT,
            created: rfc3339_micros(created),
            expires: valid_for.map(|d| rfc3339_micros(created + d)),
            stable,
            candidate,
            percent,
            halted,
        }
    }

    /// The bytes published as `rollout.json`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("rollout serialises");
        bytes.push(b'\n');
        bytes
    }

    /// `created` as a time.
    pub fn created_at(&self) -> Result<SystemTime, String> {
        parse_time("created", &self.created)
    }

    /// How long after `created` this file expires, when it does.
    pub fn validity(&self) -> Option<Duration> {
        validity(&self.created, self.expires.as_deref())
    }

    /// What the host `machine_id` (with `wariness`, when set) converges under this rollout.
    pub fn choose(&self, machine_id: &str, wariness: Option<Wariness>) -> Choice {
        let bucket = self.candidate.as_deref().map(|c| {
            let drawn = Bucket::of(machine_id, c);
            wariness.map_or(drawn, |w| drawn.shifted(w))
        });
        let on_candidate = match (&self.candidate, bucket) {
            (Some(_), Some(b)) if !self.halted => {
                self.percent == Percent::ALL || b.hundredths() < self.percent.hundredths()
            }
            _ => false,
        };
        let (track, bundle) = match (&self.candidate, on_candidate) {
            (Some(c), true) => (Track::Candidate, c.clone()),
            _ => (Track::Stable, self.stable.clone()),
        };
        Choice {
            track,
            bundle,
            candidate: self.candidate.clone(),
            bucket,
            wariness,
            percent: self.percent,
            halted: self.halted,
            rollout_created: self.created.clone(),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.format != ROLLOUT_FORMAT {
            return Err(format!(
                "format {} is not supported, expected {ROLLOUT_FORMAT}",
                self.format
            ));
        }
        for (field, id) in [
            ("stable", Some(&self.stable)),
            ("candidate", self.candidate.as_ref()),
        ] {
            if let Some(id) = id {
                if !is_sha256_hex(id) {
                    return Err(format!(
                        "{field} {id:?} is not a bundle id (64 lowercase hex digits)"
                    ));
                }
            }
        }
        check_dates(&self.created, self.expires.as_deref())
    }
}

/// Refuses what expired at `expires` (an RFC 3339 time), as seen at `now`: `Err` says when.
pub(crate) fn check_expiry(expires: Option<&str>, now: SystemTime) -> Result<(), String> {
    let Some(text) = expires else {
        return Ok(());
    };
    let at = parse_time("expires", text)?;
    if at <= now {
        return Err(format!(
            "expired at {text} (now {}): the publisher has not re-signed it since; a mirror or cache that stopped updating, or someone replaying old content",
            rfc3339_micros(now)
        ));
    }
    Ok(())
}

/// Whether `created` lies more than [`MAX_CLOCK_SKEW`] after `now`.
pub(crate) fn in_future(created: SystemTime, now: SystemTime) -> bool {
    created > now + MAX_CLOCK_SKEW
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const S: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const C: &str = "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";

    fn rollout(percent: &str, halted: bool) -> Rollout {
        Rollout::next(
            None,
            S.into(),
            Some(C.into()),
            Percent::parse(percent).unwrap(),
            halted,
            None,
            UNIX_EPOCH + Duration::from_secs(1_764_075_600),
        )
    }

    #[test]
    fn percentages_parse_exactly_and_print_as_written() {
        for (text, hundredths, shown) in [
            ("10", 1000, "10"),
            ("12.5", 1250, "12.5"),
            ("0.25%", 25, "0.25"),
            ("100", 10_000, "100"),
            ("0", 0, "0"),
        ] {
            let p = Percent::parse(text).unwrap();
            assert_eq!(p.hundredths(), hundredths, "{text}");
            assert_eq!(p.to_string(), shown);
        }
        for bad in ["100.01", "-1", "1.234", "", "ten", "1e2", "1000"] {
            let e = Percent::parse(bad).unwrap_err();
            assert!(
                e.contains("is not a percentage from 0 to 100"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn round_trips_and_refuses_what_is_not_a_rollout_file() {
        let r = rollout("12.5", false);
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.contains("\"percent\": 12.5"), "{text}");
        assert_eq!(Rollout::parse(text.as_bytes()).unwrap(), r);
        let cases = [
            (
                text.replace("\"format\": 1", "\"format\": 2"),
                "format 2 is not supported",
            ),
            (text.replace("12.5", "101"), "is not a percentage"),
            (
                text.replace(C, "abc"),
                "candidate \"abc\" is not a bundle id",
            ),
            (
                text.replace("\"halted\"", "\"paused\""),
                "unknown field `paused`",
            ),
        ];
        for (bad, want) in cases {
            let e = Rollout::parse(bad.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn a_bucket_is_fixed_per_host_and_candidate_and_spread_evenly() {
        assert_eq!(Bucket::of("host-1", C), Bucket::of("host-1", C));
        assert_ne!(Bucket::of("host-1", C), Bucket::of("host-1", S));
        let r = rollout("10", false);
        let on = (0..2000)
            .filter(|i| r.choose(&format!("m{i}"), None).track == Track::Candidate)
            .count();
        assert!((150..=250).contains(&on), "{on} of 2000 at 10 %");
    }

    #[test]
    fn halted_or_zero_sends_everyone_to_stable_and_100_everyone_to_the_candidate() {
        for (percent, halted, want) in [
            ("0", false, Track::Stable),
            ("100", true, Track::Stable),
            ("100", false, Track::Candidate),
        ] {
            let r = rollout(percent, halted);
            for i in 0..200 {
                let c = r.choose(&format!("m{i}"), None);
                assert_eq!(c.track, want, "{percent} halted={halted}");
                let id = if want == Track::Stable { S } else { C };
                assert_eq!(c.bundle, id);
            }
        }
        let promoted = Rollout {
            candidate: None,
            ..rollout("100", false)
        };
        let c = promoted.choose("m", None);
        assert_eq!((c.track, c.bucket), (Track::Stable, None));
    }

    #[test]
    fn wariness_moves_a_host_forward_or_back() {
        let eager = Wariness::new(0.0).unwrap();
        let wary = Wariness::new(1.0).unwrap();
        let neutral = Wariness::new(0.5).unwrap();
        let b = Bucket::of("host-1", C);
        assert_eq!(b.shifted(eager).hundredths(), 0);
        assert_eq!(b.shifted(wary).hundredths(), 9_999);
        assert_eq!(b.shifted(neutral), b);
        assert_eq!(Bucket(5000).shifted(Wariness(0.6)).hundredths(), 7000);
        let r = rollout("0.01", false);
        assert_eq!(r.choose("host-1", Some(eager)).track, Track::Candidate);
        let r = rollout("99.99", false);
        assert_eq!(r.choose("host-1", Some(wary)).track, Track::Stable);
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(Wariness::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_state_is_dated_after_the_last_and_keeps_its_validity() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_075_600);
        let day = Duration::from_secs(86_400);
        let first = Rollout::next(None, S.into(), None, Percent(0), false, Some(day), now);
        assert_eq!(
            first.expires.as_deref(),
            Some("2025-11-26T13:00:00.000000Z")
        );
        let second = Rollout::next(Some(&first), S.into(), None, Percent(0), true, None, now);
        assert_eq!(second.created, "2025-11-25T13:00:00.000001Z");
        assert_eq!(
            second.expires.as_deref(),
            Some("2025-11-26T13:00:00.000001Z")
        );
        assert!(check_expiry(second.expires.as_deref(), now).is_ok());
        let e = check_expiry(second.expires.as_deref(), now + day * 2).unwrap_err();
        assert!(
            e.starts_with(
                "expired at 2025-11-26T13:00:00.000001Z (now 2025-11-27T13:00:00.000000Z)"
            ),
            "{e}"
        );
    }
}
