//! A managed file's desired content without the bytes: its fingerprint, taken when the plan
//! was built, and where the bytes come from again when they are needed (a diff to show, a
//! validate command, the write). A run over thousands of files, or one huge file, holds no
//! file's content for longer than that file's own step.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::Digest;

/// How much of a file one read takes when content is streamed.
pub(crate) const CHUNK: usize = 64 << 10;

/// sha256 and size of some content: what a run compares and remembers instead of the bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The sha256 of the bytes.
    pub sha256: [u8; 32],
    /// How many bytes.
    pub size: u64,
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", hex::encode(self.sha256), self.size)
    }
}

impl Fingerprint {
    /// The fingerprint of `bytes`.
    pub fn of(bytes: &[u8]) -> Fingerprint {
        let mut h = Hashing::default();
        h.update(bytes);
        h.finish()
    }

    /// Reads `r` to its end in chunks, never holding more than one.
    pub(crate) fn of_reader(r: &mut dyn Read) -> io::Result<Fingerprint> {
        let mut h = Hashing::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(h.finish()),
                Ok(n) => h.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The file at `path`, read through once a chunk at a time.
    pub(crate) fn of_file(path: &Path) -> io::Result<Fingerprint> {
        Fingerprint::of_reader(&mut std::fs::File::open(path)?)
    }

    /// The form reports carry.
    pub fn digest(&self) -> Digest {
        Digest {
            sha256: hex::encode(self.sha256),
            size: self.size,
        }
    }
}

/// A sha256 and a byte count fed as bytes pass.
#[derive(Default, Clone)]
pub(crate) struct Hashing {
    hasher: Sha256,
    size: u64,
}

impl Hashing {
    /// Takes in `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The fingerprint of everything taken in.
    pub fn finish(self) -> Fingerprint {
        Fingerprint {
            sha256: self.hasher.finalize().into(),
            size: self.size,
        }
    }
}

/// Produces a file's bytes again: a template rendered a second time with the same context.
pub(crate) trait Produce: fmt::Debug + Send + Sync {
    /// The bytes, or why they cannot be made.
    fn produce(&self) -> Result<Vec<u8>, String>;
    /// What a stored plan keeps to make this producer again (`None`: it cannot be stored,
    /// so neither can a plan holding it).
    fn recipe(&self) -> Option<Recipe>;
}

/// A producer as a stored plan keeps it: the template and the file's own vars. What they
/// render with (the run's facts and vars, the templates) is kept once per plan; a
/// [`Revive`] installed around the load joins the two again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Recipe {
    /// The template, relative to `templates/`.
    pub template: String,
    /// The file's own vars as JSON text: values are not self-describing in a compact
    /// binary format, and only a file that changed is ever rendered again.
    pub vars: Option<String>,
}

/// Makes producers from recipes while a stored plan is read.
pub(crate) type Revive = Box<dyn Fn(Recipe) -> Arc<dyn Produce>>;

thread_local! {
    // serde's derives pass no state down to a nested field; the alternative, seeded
    // deserializers, would mean writing out every resource type's deserializer by hand.
    static REVIVE: RefCell<Option<Revive>> = RefCell::new(None);
}

/// Runs `read` (a deserialization of stored resources) with `revive` making each templated
/// file's producer; without one, a stored producer fails to load.
pub(crate) fn with_revive<T>(revive: Revive, read: impl FnOnce() -> T) -> T {
    struct Reset(Option<Revive>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            REVIVE.with(|r| *r.borrow_mut() = previous);
        }
    }
    let _reset = Reset(REVIVE.with(|r| r.borrow_mut().replace(revive)));
    read()
}

/// A [`Desired`] as stored: the fingerprint and where the bytes come from.
#[derive(Serialize, Deserialize)]
struct StoredDesired {
    fingerprint: Fingerprint,
    source: StoredSource,
}

#[derive(Serialize, Deserialize)]
enum StoredSource {
    Bytes(Vec<u8>),
    File(PathBuf),
    Produced(Recipe),
}

impl Serialize for Desired {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let source = match &self.source {
            Source::Bytes(b) => StoredSource::Bytes(b.to_vec()),
            Source::File(p) => StoredSource::File(p.clone()),
            Source::Produced(p) => match p.recipe() {
                Some(r) => StoredSource::Produced(r),
                None => return Err(serde::ser::Error::custom(format!("{p:?} cannot be stored"))),
            },
        };
        StoredDesired {
            fingerprint: self.fingerprint,
            source,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Desired {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Desired, D::Error> {
        let stored = StoredDesired::deserialize(d)?;
        let source = match stored.source {
            StoredSource::Bytes(b) => Source::Bytes(b.into()),
            StoredSource::File(p) => Source::File(p),
            StoredSource::Produced(recipe) => {
                let produced = REVIVE.with(|r| r.borrow().as_ref().map(|revive| revive(recipe)));
                match produced {
                    Some(p) => Source::Produced(p),
                    None => {
                        return Err(serde::de::Error::custom(
                            "a stored producer read without a revive",
                        ))
                    }
                }
            }
        };
        Ok(Desired {
            fingerprint: stored.fingerprint,
            source,
        })
    }
}

#[derive(Clone, Debug)]
enum Source {
    /// Held whole: inline `content`, unit files, the sysctl drop-in (all small, few).
    Bytes(Arc<[u8]>),
    /// A file of the bundle or source tree, read when needed.
    File(PathBuf),
    /// Made again when needed (a template).
    Produced(Arc<dyn Produce>),
}

/// What a managed file must hold: a fingerprint, and where the bytes come from.
///
/// Two are equal when their fingerprints are: the same bytes, however they are made.
#[derive(Clone, Debug)]
pub struct Desired {
    fingerprint: Fingerprint,
    source: Source,
}

impl PartialEq for Desired {
    fn eq(&self, other: &Desired) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for Desired {}

/// Why desired content could not be had again.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// A source file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A template did not render the second time.
    #[error("{0}")]
    Produce(String),
    /// The bytes are not the ones the plan saw (a source tree edited during the run).
    #[error("the content changed since the run was planned (was {planned:?}, now {now:?}); nothing was written")]
    Changed {
        /// What the plan saw.
        planned: Fingerprint,
        /// What came now.
        now: Fingerprint,
    },
}

impl Desired {
    /// Content held whole.
    pub fn bytes(bytes: Vec<u8>) -> Desired {
        Desired {
            fingerprint: Fingerprint::of(&bytes),
            source: Source::Bytes(bytes.into()),
        }
    }

    /// The file at `path`, fingerprinted now by reading it through once.
    pub fn file(path: PathBuf) -> io::Result<Desired> {
        let fingerprint = Fingerprint::of_file(&path)?;
        Ok(Desired {
            fingerprint,
            source: Source::File(path),
        })
    }

    /// Content made by `again`, whose first result was `bytes` (fingerprinted, then dropped
    /// by the caller).
    pub(crate) fn produced(bytes: &[u8], again: Arc<dyn Produce>) -> Desired {
        Desired {
            fingerprint: Fingerprint::of(bytes),
            source: Source::Produced(again),
        }
    }

    /// Its fingerprint.
    pub(crate) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.fingerprint.size
    }

    /// The bytes whole, checked against the fingerprint. For content small enough to hold.
    pub fn load(&self) -> Result<Arc<[u8]>, DesiredError> {
        let bytes: Arc<[u8]> = match &self.source {
            Source::Bytes(b) => return Ok(b.clone()),
            Source::File(path) => std::fs::read(path)
                .map_err(|source| DesiredError::Read {
                    path: path.clone(),
                    source,
                })?
                .into(),
            Source::Produced(p) => p.produce().map_err(DesiredError::Produce)?.into(),
        };
        self.check(Fingerprint::of(&bytes))?;
        Ok(bytes)
    }

    /// A reader over the bytes, a chunk at a time for a source file. The reader fails at its
    /// end, instead of ending, when the bytes are not the ones the plan saw: whoever copies
    /// from it keeps nothing of a wrong copy.
    pub fn open(&self) -> Result<Verified<Box<dyn Read + Send + '_>>, DesiredError> {
        let inner: Box<dyn Read + Send> = match &self.source {
            Source::Bytes(b) => Box::new(io::Cursor::new(b.clone())),
            Source::File(path) => {
                Box::new(
                    std::fs::File::open(path).map_err(|source| DesiredError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            Source::Produced(p) => {
                Box::new(io::Cursor::new(p.produce().map_err(DesiredError::Produce)?))
            }
        };
        Ok(Verified::new(inner, self.fingerprint))
    }

    /// Where a source file's bytes come from, for messages.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            _ => None,
        }
    }

    fn check(&self, now: Fingerprint) -> Result<(), DesiredError> {
        if now == self.fingerprint {
            Ok(())
        } else {
            Err(DesiredError::Changed {
                planned: self.fingerprint,
                now,
            })
        }
    }
}

/// A reader that hashes what it passes and fails at the end when the bytes differ from the
/// expected fingerprint.
pub struct Verified<R> {
    inner: R,
    hashing: Hashing,
    expected: Fingerprint,
}

impl<R> Verified<R> {
    /// Reads `inner`, which must hold the bytes of `expected`.
    pub fn new(inner: R, expected: Fingerprint) -> Verified<R> {
        Verified {
            inner,
            hashing: Hashing::default(),
            expected,
        }
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let now = std::mem::take(&mut self.hashing).finish();
            if now != self.expected {
                let e = DesiredError::Changed {
                    planned: self.expected,
                    now,
                };
                return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()));
            }
            // Read again after the end: hash nothing more, answer the same.
            self.hashing = Hashing::default();
            self.expected = Fingerprint::of(b"");
            return Ok(0);
        }
        self.hashing.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Twice(Vec<u8>);

    impl Produce for Twice {
        fn produce(&self) -> Result<Vec<u8>, String> {
            Ok(self.0.clone())
        }

        fn recipe(&self) -> Option<Recipe> {
            Some(Recipe {
                template: String::from_utf8_lossy(&self.0).into_owned(),
                vars: None,
            })
        }
    }

    #[test]
    fn a_reader_over_other_bytes_than_planned_fails_at_its_end() {
        let d = Desired::produced(b"planned\n", Arc::new(Twice(b"changed\n".to_vec())));
        let mut out = Vec::new();
        let e = d.open().unwrap().read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string().contains("changed since the run was planned"),
            "{e}"
        );
        assert!(matches!(d.load(), Err(DesiredError::Changed { .. })));
        let same = Desired::produced(b"same\n", Arc::new(Twice(b"same\n".to_vec())));
        out.clear();
        same.open().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, b"same\n");
        assert_eq!(&*same.load().unwrap(), b"same\n");
    }

    #[test]
    fn a_source_file_is_fingerprinted_in_chunks_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let bytes: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let d = Desired::file(path).unwrap();
        assert_eq!(d.fingerprint(), Fingerprint::of(&bytes));
        assert_eq!(d, Desired::bytes(bytes.clone()));
        let mut out = Vec::new();
        d.open().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, bytes);
    }
}
