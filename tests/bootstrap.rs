//! `converge bootstrap --root TREE`: an image set up offline from a signed bundle of the shipped
//! roles. Keys, config, the first converge and the timer are in place after one run, a second
//! run changes nothing, and a bundle not signed by the given key changes nothing at all.
//! Needs root (files owned by root) and systemctl (offline enable).

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_converge");

struct Setup {
    dir: tempfile::TempDir,
    key_id: String,
    key_line: String,
    bundle_id: String,
}

impl Setup {
    /// The shipped roles published and signed, and a tree with the packaged units.
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let keygen = run(&["keygen", &path(&dir.path().join("keys"))]);
        let key_id = keygen
            .split_whitespace()
            .nth(1)
            .unwrap()
            .trim_end_matches(':');
        let pubkey = std::fs::read_to_string(dir.path().join("keys/converge.pub")).unwrap();
        let key_line = pubkey.lines().nth(1).unwrap().to_owned();
        let published = run(&[
            "publish",
            &path(repo),
            &path(&dir.path().join("bundle")),
            "--key",
            &path(&dir.path().join("keys/converge.key")),
        ]);
        let bundle_id = published.split_whitespace().nth(1).unwrap().to_owned();
        let units = dir.path().join("root/usr/lib/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        for unit in ["converge.service", "converge.timer"] {
            std::fs::copy(repo.join("packaging/systemd").join(unit), units.join(unit)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("root/etc/sysctl.d")).unwrap();
        Setup {
            key_id: key_id.to_owned(),
            key_line,
            bundle_id,
            dir,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn url(&self) -> String {
        format!("file://{}", self.dir.path().join("bundle").display())
    }

    fn bootstrap(&self, key: &str) -> std::process::Output {
        Command::new(BIN)
            .args(["bootstrap", "--source", &self.url(), "--role", "base"])
            .args(["--key", key, "--var", "admin_contact=noc@example.com"])
            .arg("--root")
            .arg(self.root())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn run(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bootstrap_sets_a_tree_up_once_and_a_second_run_changes_nothing() {
    let s = Setup::new();
    // The key as cloud-init user data would pass it: its base64 line, no file.
    let out = s.bootstrap(&s.key_line);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let steps: Vec<&str> = stdout.lines().take(5).collect();
    let id = &s.key_id;
    assert_eq!(
        steps,
        [
            format!("+ /etc/converge/keys/{id}.pub: trusted key {id}: installed"),
            "+ /etc/converge/agent.toml: agent config written".to_owned(),
            format!(
                "+ {}: bundle {} fetched, signed by a trusted key",
                s.url(),
                &s.bundle_id[..12]
            ),
            "+ converge run: roles base: 16 resources, 11 changed, 0 failed".to_owned(),
            "+ converge.timer: enabled offline: it starts when the image boots".to_owned(),
        ]
    );
    assert!(
        stdout.contains(&format!(
            "bootstrap: done; {} converges to {} from its first boot\n",
            s.root().display(),
            s.url()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  /var/lib/converge/last-run.json "),
        "{stdout}"
    );

    let root = s.root();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/converge/agent.toml")).unwrap(),
        format!(
            "# Written by `converge bootstrap`. Running it again sets source, roles, trusted_keys and\n\
             # [vars] as it is told and keeps every other setting (see man converge and\n\
             # /usr/share/doc/converge/README.md.gz, \"The pull agent\").\n\
             source = \"{}\"\nroles = [\"base\"]\ntrusted_keys = [\"/etc/converge/keys/{id}.pub\"]\n\n\
             [vars]\nadmin_contact = \"noc@example.com\"\n",
            s.url()
        )
    );
    assert_eq!(
        std::fs::read_to_string(root.join(format!("etc/converge/keys/{id}.pub"))).unwrap(),
        format!(
            "untrusted comment: minisign public key {id}\n{}\n",
            s.key_line
        )
    );
    assert!(std::fs::read_to_string(root.join("etc/motd"))
        .unwrap()
        .contains("Questions: noc@example.com"));
    assert!(
        std::fs::read_to_string(root.join("etc/sysctl.d/60-converge.conf"))
            .unwrap()
            .contains("net.core.somaxconn = 4096\n")
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/systemd/system/timers.target.wants/converge.timer"))
            .unwrap(),
        Path::new("/usr/lib/systemd/system/converge.timer")
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("var/lib/converge/last-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["exit_code"], 2);
    assert_eq!(record["source"]["bundle_id"], s.bundle_id.as_str());

    // The key file this time: the same key, so nothing changes.
    let again = s.bootstrap(&path(&s.dir.path().join("keys/converge.pub")));
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    let steps: Vec<&str> = stdout.lines().take(5).collect();
    assert!(steps.iter().all(|l| l.starts_with("= ")), "{stdout}");
    assert_eq!(
        steps[3],
        "= converge run: roles base: 16 resources, 0 changed, 0 failed"
    );
    assert!(
        stdout.contains("\nbootstrap: nothing to change; this host was already set up like this\n"),
        "{stdout}"
    );
}

#[test]
fn a_bundle_not_signed_by_the_given_key_is_refused_before_anything_is_written() {
    let s = Setup::new();
    let other = s.dir.path().join("other");
    run(&["keygen", &path(&other)]);
    let out = s.bootstrap(&path(&other.join("converge.pub")));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with(&format!("converge: error: refusing {}: ", s.url()))
            && last.contains(&format!("signed by key {}, which is not trusted", s.key_id))
            && last.ends_with("; nothing was changed"),
        "{stderr}"
    );
    assert!(!s.root().join("etc/converge").exists());
    assert!(!s.root().join("etc/motd").exists());
    assert!(!s.root().join("var/lib/converge").exists());
}

#[test]
fn bad_arguments_are_refused_with_the_argument_named() {
    let s = Setup::new();
    let out = s.bootstrap("/nonexistent/converge.pub");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "converge: error: --key /nonexistent/converge.pub: no such file, and not a minisign public key line either"
        ),
        "{stderr}"
    );
    assert!(!s.root().join("etc/converge").exists());
}
