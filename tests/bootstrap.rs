//! `converge bootstrap --root TREE`: an image set up offline from a signed bundle of the shipped
//! roles. Keys, config, the first converge and the timer are in place after one run, a second
//! run changes nothing, and a bundle not signed by the given key changes nothing at all.
//! Needs root (files owned by root) and systemctl (offline enable).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::converge;

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
        // What the package installs: the commented template, replaced whole by bootstrap.
        std::fs::create_dir_all(dir.path().join("root/etc/converge")).unwrap();
        std::fs::copy(
            repo.join("packaging/deb/agent.toml"),
            dir.path().join("root/etc/converge/agent.toml"),
        )
        .unwrap();
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
        self.bootstrap_with(&[
            "--role",
            "base",
            "--key",
            key,
            "--var",
            "admin_contact=noc@example.com",
        ])
    }

    /// `converge bootstrap --source URL ARGS... --root ROOT`.
    fn bootstrap_with(&self, args: &[&str]) -> std::process::Output {
        converge(&["bootstrap", "--source", &self.url()])
            .args(args)
            .arg("--root")
            .arg(self.root())
            .env("NO_COLOR", "1")
            .env_remove("CONVERGE_SIGNING_PASSWORD")
            .output()
            .unwrap()
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// What bootstrap may write under the root, and what the role writes.
    fn assert_untouched(&self) {
        let root = self.root();
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb/agent.toml");
        assert_eq!(
            std::fs::read(root.join("etc/converge/agent.toml")).unwrap(),
            std::fs::read(template).unwrap()
        );
        for rel in ["etc/converge/keys", "etc/motd", "var/lib/converge"] {
            assert!(!root.join(rel).exists(), "{rel} was written");
        }
        assert!(!root
            .join("etc/systemd/system/timers.target.wants/converge.timer")
            .exists());
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn run(args: &[&str]) -> String {
    let out = converge(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn bootstrap_sets_a_tree_up_once_and_a_second_run_changes_nothing() {
    let s = Setup::new();
    // The key as cloud-init user data would pass it: its base64 line, no file.
    let out = s.bootstrap(&s.key_line);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
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
            "# Written by `converge bootstrap`. Running it again sets source, and roles, trusted_keys\n\
             # and [vars] keys where its command line names them, and keeps every other setting (see\n\
             # man converge and /usr/share/doc/converge/README.md.gz, \"The pull agent\").\n\
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
    s.assert_untouched();
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
    s.assert_untouched();
}

#[test]
fn without_the_timer_unit_nothing_is_written() {
    let s = Setup::new();
    std::fs::remove_file(s.root().join("usr/lib/systemd/system/converge.timer")).unwrap();
    let out = s.bootstrap(&s.key_line);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "converge: error: converge.timer is not installed in {}: install the converge \
             package first (it ships the unit)\n",
            s.root().display()
        )
    );
    s.assert_untouched();
}

#[test]
fn without_roles_or_nodes_toml_nothing_is_written() {
    let s = Setup::new();
    // The shipped tree has a nodes.toml: publish one without it.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bare = s.file("bare");
    std::fs::create_dir(&bare).unwrap();
    for dir in ["roles", "templates", "files"] {
        let out = Command::new("cp")
            .arg("-r")
            .arg(repo.join(dir))
            .arg(bare.join(dir))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let key = s.file("keys/converge.key");
    run(&[
        "publish",
        &path(&bare),
        &path(&s.file("bundle")),
        "--key",
        &path(&key),
    ]);
    let out = s.bootstrap_with(&["--key", &s.key_line]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "converge: error: no roles: pass --role NAME (repeatable), set roles in the agent \
             config, or add nodes.toml to the source\n{} cannot be planned for this host; \
             nothing was changed\n",
            s.url()
        )
    );
    s.assert_untouched();
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn rotating_keys_as_the_readme_says_keeps_the_hosts_settings() {
    let s = Setup::new();
    let root = s.root();
    let old_pub = path(&s.file("keys/converge.pub"));
    let first = s.bootstrap(&old_pub);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let motd = std::fs::read_to_string(root.join("etc/motd")).unwrap();
    assert!(motd.contains("Questions: noc@example.com"), "{motd}");
    let config = root.join("etc/converge/agent.toml");
    // An admin's own setting and comment, which bootstrap must keep too.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("# ours\n");
    text = text.replace("[vars]\n", "interval = \"10m\"\n\n[vars]\n");
    std::fs::write(&config, &text).unwrap();

    // 1. `converge keygen new/` on the publishing machine.
    let keygen = run(&["keygen", &path(&s.file("new"))]);
    let new_id = keygen
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    let new_pub = path(&s.file("new/converge.pub"));
    let old_id = &s.key_id;
    let keys = format!(
        "trusted_keys = [\"/etc/converge/keys/{old_id}.pub\", \"/etc/converge/keys/{new_id}.pub\"]"
    );

    // 2. Every host trusts both keys: bootstrap again with `--key old.pub --key new.pub`.
    let both = s.bootstrap_with(&["--key", &old_pub, "--key", &new_pub]);
    let stdout = String::from_utf8_lossy(&both.stdout);
    assert_eq!(both.status.code(), Some(0), "{both:?}");
    assert!(
        stdout.starts_with(&format!(
            "= /etc/converge/keys/{old_id}.pub: trusted key {old_id}: unchanged\n\
             + /etc/converge/keys/{new_id}.pub: trusted key {new_id}: installed\n\
             + /etc/converge/agent.toml: agent config updated\n\
             \x20   --- /etc/converge/agent.toml\n\
             \x20   +++ /etc/converge/agent.toml\n\
             \x20   @@ -4,5 +4,5 @@\n\
             \x20    source = \"{}\"\n\
             \x20    roles = [\"base\"]\n\
             \x20   -trusted_keys = [\"/etc/converge/keys/{old_id}.pub\"]\n\
             \x20   +{keys}\n\
             \x20    \n\
             \x20    interval = \"10m\"\n\
             = file://",
            s.url()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n= converge run: roles base: 16 resources, 0 changed, 0 failed\n"),
        "{stdout}"
    );
    let want = text.replace(
        &format!("trusted_keys = [\"/etc/converge/keys/{old_id}.pub\"]"),
        &keys,
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), want);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        motd
    );

    // 3. Publish with the new key: the host takes it.
    run(&[
        "publish",
        env!("CARGO_MANIFEST_DIR"),
        &path(&s.file("bundle")),
        "--key",
        &path(&s.file("new/converge.key")),
    ]);
    let taken = s.bootstrap_with(&["--key", &old_pub, "--key", &new_pub]);
    let stdout = String::from_utf8_lossy(&taken.stdout);
    assert_eq!(taken.status.code(), Some(0), "{taken:?}");
    assert!(
        stdout.contains(" fetched, signed by a trusted key\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n= /etc/converge/agent.toml: agent config unchanged\n"),
        "{stdout}"
    );

    // 4. Remove the old key from trusted_keys.
    let last = s.bootstrap_with(&["--key", &new_pub]);
    assert_eq!(last.status.code(), Some(0), "{last:?}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        want.replace(
            &keys,
            &format!("trusted_keys = [\"/etc/converge/keys/{new_id}.pub\"]")
        )
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/motd")).unwrap(),
        motd
    );
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("var/lib/converge/last-run.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["roles"], serde_json::json!(["base"]));
    assert_eq!(record["source"]["freshness"], "unchanged");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_holding_the_state_dir_stops_a_rebootstrap_before_its_first_write() {
    let s = Setup::new();
    let root = s.root();
    let key = path(&s.file("keys/converge.pub"));
    let first = s.bootstrap(&key);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let config = root.join("etc/converge/agent.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[vars]\n", "lock_wait = \"1s\"\n\n[vars]\n");
    std::fs::write(&config, &text).unwrap();

    // An agent run holds the state dir for as long as the gate is there.
    let gate = s.file("gate");
    std::fs::write(&gate, "").unwrap();
    let mut run = std::process::Command::new(support::require_tool("flock"))
        .arg(root.join("var/lib/converge/run.lock"))
        .args([
            "sh",
            "-c",
            "touch \"$0.held\"; while [ -e \"$0\" ]; do sleep 0.05; done",
        ])
        .arg(&gate)
        .spawn()
        .unwrap();
    support::wait_until("the run holds the lock", Duration::from_secs(30), || {
        s.file("gate.held").exists()
    });
    let args = [
        "--role",
        "base",
        "--key",
        &key,
        "--var",
        "admin_contact=ops@example.com",
    ];
    let refused = s.bootstrap_with(&args);
    std::fs::remove_file(&gate).unwrap();
    run.wait().unwrap();
    // Refused before its first write: nothing done, and it says why.
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(String::from_utf8_lossy(&refused.stdout), "", "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("lock"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // Once the run is over, the same bootstrap goes through.
    let again = s.bootstrap_with(&args);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("admin_contact = \"ops@example.com\""),
        "{again:?}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_absolute_link_in_the_tree_leads_inside_it() {
    let s = Setup::new();
    let outside = tempfile::tempdir().unwrap();
    let outside = outside.path().canonicalize().unwrap();
    std::os::unix::fs::symlink(&outside, s.root().join("var")).unwrap();
    let out = s.bootstrap(&s.key_line);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // Where the booted image's /var is: the link's target inside the tree.
    let var = s.root().join(outside.strip_prefix("/").unwrap());
    assert!(var.join("lib/converge/last-run.json").is_file());
    assert!(var.join("lib/converge/metrics/converge.prom").is_file());
}

#[test]
fn dot_dot_in_the_images_own_config_is_refused_at_its_place() {
    let s = Setup::new();
    let outside = tempfile::tempdir().unwrap();
    let up = "/..".repeat(s.root().components().count());
    let config = format!(
        "source = \"https://old.example.com/\"\nstate_dir = \"{up}{}\"\n",
        outside.path().display()
    );
    std::fs::create_dir_all(s.root().join("etc/converge")).unwrap();
    std::fs::write(s.root().join("etc/converge/agent.toml"), &config).unwrap();
    let out = s.bootstrap(&s.key_line);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}/etc/converge/agent.toml:2:13: state_dir is not a plain path (it contains '..')",
            s.root().display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_to_string(s.root().join("etc/converge/agent.toml")).unwrap(),
        config
    );
    assert!(!s.root().join("etc/converge/keys").exists());
    assert!(!s.root().join("etc/motd").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn bootstrap_s_own_resources_check_as_the_engine_applies_them() {
    use converge::report::{Report, Status};
    let s = Setup::new();
    let root = s.root();
    let opts = converge::bootstrap::Options {
        source: s.url(),
        roles: vec!["base".into()],
        keys: vec![s.key_line.clone()],
        vars: vec!["admin_contact=noc@example.com".into()],
    };
    let check = || {
        let sys = converge::system::System::new(&root).unwrap();
        let facts = serde_json::to_value(converge::facts::Facts::gather(&root).unwrap()).unwrap();
        let prepared = converge::bootstrap::prepare(&opts, &sys, &facts).unwrap();
        converge::bootstrap::check(&prepared, &sys).unwrap()
    };
    let statuses = |report: &Report| -> Vec<(String, Status)> {
        report
            .resources
            .iter()
            .map(|o| (o.id.to_string(), o.status))
            .collect()
    };
    let id = &s.key_id;
    let key = format!("file:/etc/converge/keys/{id}.pub");
    let before = check();
    assert_eq!(
        statuses(&before),
        [
            ("directory:/etc/converge/keys".to_owned(), Status::Pending),
            (key.clone(), Status::Pending),
            ("file:/etc/converge/agent.toml".to_owned(), Status::Pending),
            ("service:converge.timer".to_owned(), Status::Pending),
        ]
    );
    let fields = |report: &Report, at: usize| -> Vec<String> {
        let change = report.resources[at].change.as_deref().unwrap();
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        change
            .fields
            .iter()
            .map(|f| format!("{}: {} → {}", f.field, shown(&f.before), shown(&f.after)))
            .collect()
    };
    assert_eq!(
        fields(&before, 1),
        ["owner: - → root", "group: - → root", "mode: - → 0644"]
    );
    assert_eq!(fields(&before, 3), ["enabled: disabled → enabled"]);
    s.assert_untouched();

    let out = s.bootstrap(&s.key_line);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let after = check();
    assert!(
        statuses(&after)
            .iter()
            .all(|(_, status)| *status == Status::InSync),
        "{:?}",
        statuses(&after)
    );
    assert_eq!(statuses(&after).len(), 3, "the keys directory is there now");
}
