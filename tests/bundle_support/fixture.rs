//! Scenario builders: a source tree, a publish dir, a state dir, and fast sync options.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use converge::bundle::{SyncOptions, TrustedKey};
use tempfile::TempDir;

/// The files of a small but realistic source tree.
pub fn sample_files() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("roles/base.toml", "[sysctl]\n\"net.core.somaxconn\" = 4096\n"),
        (
            "roles/web.toml",
            "include = [\"base\"]\n[[file]]\npath = \"/etc/nginx/nginx.conf\"\ntemplate = \"nginx/nginx.conf.hbs\"\n",
        ),
        (
            "templates/nginx/nginx.conf.hbs",
            "worker_connections {{vars.worker_connections}};\n",
        ),
        ("files/motd", "managed by converge\n"),
        // Same content as motd: one object, two paths.
        ("files/issue", "managed by converge\n"),
        ("nodes.toml", "[[node]]\nmatch = \"web*\"\nroles = [\"web\"]\n"),
    ])
}

/// Temp dirs for one scenario: `src` (what admins edit), `out` (published), `state`.
pub struct Scenario {
    pub tmp: TempDir,
}

impl Scenario {
    /// A scenario whose source tree holds [`sample_files`].
    pub fn new() -> Scenario {
        let s = Scenario {
            tmp: tempfile::tempdir().unwrap(),
        };
        for (path, content) in sample_files() {
            s.write(path, content);
        }
        s
    }

    pub fn src(&self) -> PathBuf {
        self.tmp.path().join("src")
    }

    pub fn out(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    pub fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// Write a file into the source tree.
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.src().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// Where `current` points, as a bundle id.
    pub fn current_id(&self) -> Option<String> {
        let t = fs::read_link(self.state().join("current")).ok()?;
        Some(t.file_name()?.to_str()?.to_string())
    }

    /// Bundle ids materialised in the state dir.
    pub fn bundle_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(self.state().join("bundles"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    }

    /// The object path of a source file's current content, as the server sees it.
    pub fn object_url_path(&self, rel: &str) -> String {
        let m: serde_json::Value =
            serde_json::from_slice(&fs::read(self.out().join("manifest.json")).unwrap()).unwrap();
        format!("/objects/{}", m["files"][rel]["sha256"].as_str().unwrap())
    }
}

/// Every regular file under `dir` (relative path → bytes), skipping the bundle's own
/// `.manifest.json`.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                if rel != ".manifest.json" {
                    out.insert(rel, fs::read(&p).unwrap());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Options with short timeouts and one quick retry, so fault tests stay fast.
pub fn fast_opts(keys: Vec<TrustedKey>) -> SyncOptions {
    SyncOptions {
        trusted_keys: keys,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(400),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..SyncOptions::default()
    }
}
