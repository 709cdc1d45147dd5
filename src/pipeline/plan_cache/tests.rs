//! The plan cache's unit tests: keys, entries, pruning, stored plans against fresh ones.

use super::*;

const FACTS: &str = r#"{"hostname": "web1", "fqdn": "web1.example.com", "cpus": 4,
    "os": {"family": "debian", "id": "debian", "version_id": "12", "codename": "bookworm", "pretty_name": "Debian 12"},
    "kernel": {"release": "6.1.0"}, "arch": "x86_64",
    "memory": {"total_bytes": 8589934592, "total_mb": 8192},
    "interfaces": {"lo": {"ipv4": ["127.0.0.1"], "ipv6": ["::1"]}}}"#;

/// Every resource type, and edges of each sort.
const ALL_KINDS: &str = r#"
include = ["web"]

[vars]
greeting = "hello"

[[group]]
name = "app"
gid = 1500

[[user]]
name = "app"
uid = 1500
group = "app"
groups = ["adm"]
home = "/srv/app"

[[directory]]
path = "/srv/app"
owner = "app"
group = "app"

[[file]]
path = "/srv/app/inline.conf"
content = "inline\n"
owner = "app"
validate = "true {path}"

[[file]]
path = "/srv/app/own-vars.conf"
template = "own.hbs"
[file.vars]
port = 8080

[[symlink]]
path = "/srv/app/current"
target = "inline.conf"

[[exec]]
name = "init"
command = "true"
creates = "/srv/app/ready"
environment = { LC_ALL = "C.UTF-8" }
timeout = "2m"
after = ["user:app"]

[[nftables]]
family = "inet"
table = "filter"
template = "own.hbs"
purge = true
after = ["package:nginx"]
[nftables.vars]
port = 22
[[kernel_module]]
name = "br_netfilter"
options = "debug=1"

[sysfs]
"kernel/mm/transparent_hugepage/enabled" = "never"
"block/nvme*/queue/scheduler" = { value = "mq-deadline", persist = true }

[[health]]
name = "web"
http = "http://127.0.0.1/healthz"
services = ["nginx"]
"#;

/// The repo's own example tree with one more role and template beside it.
fn tree() -> (tempfile::TempDir, SourceTree) {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let copy = std::process::Command::new("cp")
        .args(["-r", "roles", "templates", "files"])
        .arg(dir.path())
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(copy.success());
    std::fs::write(dir.path().join("roles/all.toml"), ALL_KINDS).unwrap();
    std::fs::write(
        dir.path().join("templates/own.hbs"),
        "{{vars.greeting}} {{vars.port}} on {{facts.hostname}}\n",
    )
    .unwrap();
    let tree = SourceTree::open(dir.path()).unwrap();
    (dir, tree)
}

fn build(tree: &SourceTree) -> Plan {
    let facts: Value = serde_json::from_str(FACTS).unwrap();
    let roles = vec!["all".to_owned()];
    crate::pipeline::plan(tree, &roles, &Map::new(), &facts, PlanOptions::default()).unwrap()
}

fn inputs<'a>(tree: &'a SourceTree, facts: &'a Value, vars: &'a Map<String, Value>) -> Inputs<'a> {
    Inputs {
        tree,
        bundle_id: "",
        roles: &[],
        settings_roles: &[],
        overrides: vars,
        facts,
        options: PlanOptions::default(),
    }
}

#[test]
fn a_plan_read_back_is_the_plan_built() {
    let (_dir, tree) = tree();
    let fresh = build(&tree);
    let kinds: std::collections::BTreeSet<_> = fresh.items.iter().map(|p| p.id.kind).collect();
    assert_eq!(
        kinds.len(),
        crate::resource::Kind::ALL.len() - 1,
        "{kinds:?}"
    );
    // Every resource type is stored and read back, not only every kind.
    let types: std::collections::HashSet<_> = fresh
        .items
        .iter()
        .map(|p| std::mem::discriminant(&p.resource))
        .collect();
    assert_eq!(types.len(), crate::resource::AnyResource::TYPES);
    let bytes = encode("k", &fresh, &["all".into(), "web".into()], Vec::new()).unwrap();
    let (cached, roles) = decode(&bytes, "k", &tree).unwrap();
    assert_eq!(roles, ["all", "web"]);
    assert_eq!(format!("{fresh:#?}"), format!("{cached:#?}"));
    assert_eq!(fresh.health, cached.health);
    // Resources compare by desired state too, content by fingerprint.
    for (a, b) in fresh.items.iter().zip(&cached.items) {
        assert_eq!(a.resource, b.resource, "{:?}", a.id);
    }
    // Names are shared again as in a built plan.
    let web: Vec<_> = cached.items.iter().filter(|p| &*p.role == "web").collect();
    assert!(web.len() > 1);
    assert!(web.windows(2).all(|w| Arc::ptr_eq(&w[0].role, &w[1].role)));
}

#[test]
fn a_templated_file_of_a_cached_plan_renders_the_same_bytes() {
    let (_dir, tree) = tree();
    let fresh = build(&tree);
    let (cached, _) = decode(&encode("k", &fresh, &[], Vec::new()).unwrap(), "k", &tree).unwrap();
    let content = |plan: &Plan, path: &str| {
        let item = plan.items.iter().find(|p| p.id.name == path).unwrap();
        let crate::resource::AnyResource::File(f) = &item.resource else {
            panic!("{path} is a file");
        };
        f.content.load().unwrap().to_vec()
    };
    for path in [
        "/srv/app/own-vars.conf",
        "/etc/nginx/nginx.conf",
        "/etc/motd",
    ] {
        assert_eq!(content(&cached, path), content(&fresh, path), "{path}");
    }
    assert_eq!(
        content(&cached, "/srv/app/own-vars.conf"),
        b"hello 8080 on web1\n"
    );
}

#[test]
fn a_truncated_or_corrupt_entry_is_not_read() {
    let (_dir, tree) = tree();
    let bytes = encode("k", &build(&tree), &[], Vec::new()).unwrap();
    assert!(decode(&bytes, "k", &tree).is_ok());
    let short = &bytes[..bytes.len() - 1];
    assert_eq!(
        decode(short, "k", &tree).unwrap_err(),
        "checksum mismatch (truncated or corrupt)"
    );
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(
        decode(&flipped, "k", &tree).unwrap_err(),
        "checksum mismatch (truncated or corrupt)"
    );
    assert_eq!(decode(&bytes[..20], "k", &tree).unwrap_err(), "truncated");
    assert_eq!(
        decode(b"something else", "k", &tree).unwrap_err(),
        "not a plan cache entry of this format"
    );
}

#[test]
fn an_entry_is_used_only_under_the_key_it_was_stored_under() {
    let (_dir, tree) = tree();
    let bytes = encode("k", &build(&tree), &[], Vec::new()).unwrap();
    assert!(decode(&bytes, "k", &tree).is_ok());
    assert_eq!(
        decode(&bytes, "other", &tree).unwrap_err(),
        "stored under key k, not this one"
    );
}

#[test]
fn an_edited_source_file_of_the_same_size_is_a_miss() {
    let (dir, tree) = tree();
    let bytes = encode("k", &build(&tree), &[], Vec::new()).unwrap();
    let source = dir.path().join("files/nginx/security-headers.conf");
    let mut text = std::fs::read(&source).unwrap();
    text[0] = if text[0] == b'#' { b';' } else { b'#' };
    std::fs::write(&source, &text).unwrap();
    let why = decode(&bytes, "k", &tree).unwrap_err();
    assert_eq!(why, format!("source {} changed", source.display()));
}

#[test]
fn the_key_follows_every_input_planning_reads() {
    let (dir, tree) = tree();
    let facts: Value = serde_json::from_str(FACTS).unwrap();
    let none = Map::new();
    let base = PlanCache::key(&inputs(&tree, &facts, &none)).unwrap();
    assert_eq!(PlanCache::key(&inputs(&tree, &facts, &none)).unwrap(), base);
    let differs = |what: &str, key: Option<String>| {
        assert_ne!(key.unwrap(), base, "{what} must change the key");
    };
    let mut vars = Map::new();
    vars.insert("greeting".into(), "hi".into());
    differs("a var", PlanCache::key(&inputs(&tree, &facts, &vars)));
    let mut other = facts.clone();
    other["cpus"] = 8.into();
    differs("a fact", PlanCache::key(&inputs(&tree, &other, &none)));
    let roles = vec!["web".to_owned()];
    differs(
        "the roles asked",
        PlanCache::key(&Inputs {
            roles: &roles,
            ..inputs(&tree, &facts, &none)
        }),
    );
    differs(
        "the settings' roles",
        PlanCache::key(&Inputs {
            settings_roles: &roles,
            ..inputs(&tree, &facts, &none)
        }),
    );
    differs(
        "a bundle id",
        PlanCache::key(&Inputs {
            bundle_id: "abc",
            ..inputs(&tree, &facts, &none)
        }),
    );
    let options = PlanOptions {
        keep_rendered: true,
    };
    differs(
        "the options",
        PlanCache::key(&Inputs {
            options,
            ..inputs(&tree, &facts, &none)
        }),
    );
    let edits = [
        ("roles/web.toml", "\n# edited\n"),
        ("roles/base.toml", "\n# an included role\n"),
        ("templates/own.hbs", "x"),
        ("templates/partials/new.hbs", "a new partial"),
        ("nodes.toml", "# classification\n"),
    ];
    for (rel, more) in edits {
        let path = dir.path().join(rel);
        let before = std::fs::read(&path).ok();
        let mut text = before.clone().unwrap_or_default();
        text.extend_from_slice(more.as_bytes());
        std::fs::write(&path, &text).unwrap();
        differs(rel, PlanCache::key(&inputs(&tree, &facts, &none)));
        match before {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        assert_eq!(
            PlanCache::key(&inputs(&tree, &facts, &none)).unwrap(),
            base,
            "{rel} undone"
        );
    }
}

#[test]
fn pruning_keeps_the_newest_entries() {
    let state = tempfile::tempdir().unwrap();
    let cache = PlanCache::open(state.path()).unwrap().unwrap();
    let plan = Plan::default();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    for i in 0..KEEP + 3 {
        cache.store(&format!("k{i:02}"), &plan, &[]);
        // Written in order, seconds apart: k00 is the oldest.
        let f = std::fs::File::open(cache.dir.join(format!("k{i:02}"))).unwrap();
        f.set_modified(old + std::time::Duration::from_secs(i as u64))
            .unwrap();
    }
    // A dead run's temp file is a leftover; this (live) process's is an entry being written.
    let dead = format!("{}999999999-x", temp::PREFIX);
    let live = temp::name("y");
    for t in [&dead, &live] {
        std::fs::write(cache.dir.join(t), "partial").unwrap();
    }
    cache.store("newest", &plan, &[]);
    let mut left: Vec<String> = std::fs::read_dir(&cache.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want: Vec<String> = (KEEP + 3 - (KEEP - 1)..KEEP + 3)
        .map(|i| format!("k{i:02}"))
        .collect();
    want.push("newest".into());
    let mut with_live = want.clone();
    with_live.insert(0, live.clone());
    assert_eq!(left, with_live);
    std::fs::remove_file(cache.dir.join(&live)).unwrap();
    // A hit counts as use: the entry it read is kept over newer ones.
    let tree_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree_dir.path().join("roles")).unwrap();
    let tree = SourceTree::open(tree_dir.path()).unwrap();
    let oldest = &want[0];
    assert!(cache.load(oldest, &tree).is_some());
    cache.store("newer", &plan, &[]);
    assert!(cache.dir.join(oldest).exists());
    assert!(!cache.dir.join(&want[1]).exists());
}

#[test]
fn no_state_dir_no_cache() {
    let state = tempfile::tempdir().unwrap();
    assert!(PlanCache::open(&state.path().join("missing"))
        .unwrap()
        .is_none());
    assert!(!state.path().join("missing").exists());
}

/// Builds `dir/NAME.deb` of package `tool` at `version` with dpkg-deb.
fn package_file(dir: &Path, version: &str) -> PathBuf {
    let pkg = tempfile::tempdir().unwrap();
    std::fs::create_dir(pkg.path().join("DEBIAN")).unwrap();
    std::fs::write(
        pkg.path().join("DEBIAN/control"),
        format!("Package: tool\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@t.invalid>\nDescription: t\n"),
    )
    .unwrap();
    let out = dir.join("tool.deb");
    let built = std::process::Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(pkg.path())
        .arg(&out)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    out
}

#[test]
fn a_package_file_is_stored_with_its_plan_and_a_changed_one_is_a_miss() {
    let (dir, tree) = tree();
    std::fs::create_dir_all(dir.path().join("files/pkgs")).unwrap();
    let deb = package_file(&dir.path().join("files/pkgs"), "0.9-1");
    std::fs::write(
        dir.path().join("roles/vendor.toml"),
        "[[package]]\nname = \"tool\"\nsource = \"pkgs/tool.deb\"\n",
    )
    .unwrap();
    let facts: Value = serde_json::from_str(FACTS).unwrap();
    let roles = vec!["vendor".to_owned()];
    let fresh =
        crate::pipeline::plan(&tree, &roles, &Map::new(), &facts, PlanOptions::default()).unwrap();
    let bytes = encode("k", &fresh, &roles, Vec::new()).unwrap();
    let (cached, _) = decode(&bytes, "k", &tree).unwrap();
    assert_eq!(fresh.items[0].resource, cached.items[0].resource);
    assert_eq!(format!("{fresh:#?}"), format!("{cached:#?}"));

    package_file(&dir.path().join("files/pkgs"), "1.0-1");
    let why = decode(&bytes, "k", &tree).unwrap_err();
    assert_eq!(why, format!("source {} changed", deb.display()));
}
