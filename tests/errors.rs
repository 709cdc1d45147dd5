//! Bad input: a clear error with its location, exit 1, and nothing under the root changes.

mod support;

use support::Project;

/// Runs check and apply on `role`; both must fail with exit 1 and leave the root as it was.
fn refused(p: &Project, role: &str) -> String {
    let before = p.tree();
    let check = p.check(&[role]);
    assert_eq!(check.code, 1, "check: {}{}", check.stdout, check.stderr);
    assert_eq!(check.stdout, "");
    let apply = p.apply(&[role]);
    assert_eq!(apply.code, 1, "apply: {}{}", apply.stdout, apply.stderr);
    assert_eq!(apply.stderr, check.stderr);
    assert_eq!(p.tree(), before, "the root changed");
    apply.stderr
}

fn project_with_existing_state() -> Project {
    let p = Project::new();
    p.root_file("/etc/motd", "untouched\n");
    p.file(
        "roles/ok.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"new\\n\"\n",
    );
    p
}

#[test]
fn malformed_toml() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n[[file]\npath = \"/etc/x\"\n",
    );
    insta::assert_snapshot!(refused(&p, "r"));
}

#[test]
fn unknown_key_names_the_expected_keys() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n\n[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\nmdoe = \"0644\"\n",
    );
    insta::assert_snapshot!(refused(&p, "r"));
}

#[test]
fn a_broken_file_table_gives_the_errors_of_its_role_read_whole() {
    // Planning reads [[file]] tables one at a time, after the rest of every role: the
    // include below is found missing first, but a whole read stops at the broken table of
    // its role and never looks for it, and that read's errors are the ones given.
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\", \"gone\"]\n[[file]]\npath = \"/etc/x\"\ncontent = \"x\"\nmdoe = \"0644\"\n",
    );
    let err = refused(&p, "r");
    assert_eq!(
        err,
        "error: roles/r.toml:5:1: unknown field `mdoe`, expected one of `path`, `content`, `template`, `source`, `owner`, `group`, `mode`, `sensitive`, `validate`, `vars`, `after`, `notify`\n  |\n5 | mdoe = \"0644\"\n  | ^\nconverge: 1 error; nothing was changed\n"
    );
    // Both roles broken: the includer's table stops the whole read before its include.
    p.file("roles/s.toml", "include = [\"r\"]\n[[file]]\npath = 7\n");
    let err = refused(&p, "s");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        lines,
        ["error: roles/s.toml:3:8: invalid type: integer `7`, expected a string"],
        "{err}"
    );
}

#[test]
fn missing_template() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n[[file]]\npath = \"/etc/x\"\ntemplate = \"nginx/missing.hbs\"\n",
    );
    insta::assert_snapshot!(refused(&p, "r"));
}

#[test]
fn missing_variable_names_template_line_and_variable() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n[[file]]\npath = \"/etc/app.conf\"\ntemplate = \"app.conf.hbs\"\n",
    )
    .file(
        "templates/app.conf.hbs",
        "# {{facts.hostname}}\nlisten = {{vars.address}}:{{vars.port}}\n",
    );
    let err = refused(&p, "r");
    assert!(err.starts_with(
        "error: templates/app.conf.hbs:2:10: missing variable 'vars.address' (rendering /etc/app.conf for role 'r')\n"
    ), "{err}");
    insta::assert_snapshot!(err);
}

#[test]
fn include_cycle_names_the_cycle() {
    let p = project_with_existing_state();
    p.file("roles/a.toml", "include = [\"ok\", \"b\"]\n")
        .file("roles/b.toml", "# b needs a\ninclude = [\"a\"]\n");
    insta::assert_snapshot!(refused(&p, "a"));
}

#[test]
fn conflict_names_both_roles() {
    let p = project_with_existing_state();
    p.file(
        "roles/web.toml",
        "include = [\"ok\"]\n\n[[file]]\npath = \"/etc/motd\"\ncontent = \"web\\n\"\n",
    );
    insta::assert_snapshot!(refused(&p, "web"));
}

#[test]
fn identical_declarations_in_two_roles_are_not_a_conflict() {
    let p = project_with_existing_state();
    p.file(
        "roles/web.toml",
        "include = [\"ok\"]\n\n[[file]]\npath = \"/etc/motd\"\ncontent = \"new\\n\"\n",
    );
    let r = p.apply(&["web"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(
        r.stdout.lines().last(),
        Some("apply: 1 resource: 0 in sync, 1 changed, 0 failed")
    );
}

#[test]
fn unknown_role_is_located_at_the_include() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\", \"nope\"]\n[[file]]\npath = \"/etc/x\"\ncontent = \"\"\nmode = \"rw-r--r--\"\n",
    );
    insta::assert_snapshot!(refused(&p, "r"));
}

#[test]
fn no_source_is_a_one_line_reason() {
    let p = Project::new();
    let r = p.run(&[
        "check",
        "--role",
        "web",
        "--config",
        "/nonexistent/agent.toml",
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("converge: error: "), "{}", r.stderr);
}

#[test]
fn validate_reports_every_error_not_just_the_first() {
    let p = Project::new();
    p.file(
        "roles/a.toml",
        "[[file]]\npath = \"relative\"\ncontent = \"\"\n",
    )
    .file(
        "roles/b.toml",
        "[[file]]\npath = \"/x\"\ntemplate = \"t.hbs\"\n",
    )
    .file("roles/c.toml", "[vars\n")
    .file(
        "roles/good.toml",
        "[[file]]\npath = \"/y\"\ncontent = \"y\"\n",
    )
    .file("templates/t.hbs", "{{vars.nope}}\n");
    let src = p.src();
    let r = p.run(&["validate", "--source", src.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    insta::assert_snapshot!(r.stderr);
}

#[test]
fn validate_passes_on_the_shipped_roles() {
    let p = Project::new();
    let repo = env!("CARGO_MANIFEST_DIR");
    let r = p.run(&["validate", "--source", repo]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("validate: "), "{}", r.stdout);
}

#[test]
fn a_source_that_is_neither_tree_nor_bundle_is_refused_before_anything() {
    let p = Project::new();
    let empty = p.root(); // exists, but has no roles/ and no manifest.json
    let state = p.src().parent().unwrap().join("state");
    let r = p.run(&[
        "check",
        "--source",
        empty.to_str().unwrap(),
        "--role",
        "web",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "converge: error: {}: neither a source tree (no roles/ directory) nor a published bundle (no manifest.json)\n",
            empty.display()
        )
    );
    assert!(
        !state.exists(),
        "nothing may be created for a source that cannot work"
    );
}

#[test]
fn validate_and_publish_check_nodes_toml_against_the_roles() {
    let p = Project::new();
    p.file(
        "roles/web.toml",
        "[[file]]\npath = \"/x\"\ncontent = \"x\"\n",
    )
    .file(
        "nodes.toml",
        "[[node]]\nhostname = \"web-*\"\nroles = [\"web\", \"wbe\"]\n",
    );
    let src = p.src().display().to_string();
    let r = p.run(&["validate", "--source", &src]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.starts_with(
            "error: nodes.toml:3:17: role 'wbe' not found: there is no roles/wbe.toml\n"
        ),
        "{}",
        r.stderr
    );
    let out = p.src().parent().unwrap().join("out");
    let r = p.run(&["publish", &src, out.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("nodes.toml:3:17: role 'wbe' not found"),
        "{}",
        r.stderr
    );
    assert!(!out.join("manifest.json").exists(), "nothing published");
}

#[test]
fn a_path_has_one_spelling_only() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n[[file]]\npath = \"/etc//motd\"\ncontent = \"x\"\n",
    );
    let err = refused(&p, "r");
    assert!(err.starts_with(
        "error: roles/r.toml:3:8: invalid path '/etc//motd': expected an absolute path without '.', '..', '//' or a trailing '/'\n"
    ), "{err}");
}

#[test]
fn a_sensitive_template_error_shows_no_template_line() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/db.conf\"\ntemplate = \"db.hbs\"\nsensitive = true\n",
    )
    .file("templates/db.hbs", "password = \"S3cret\" {{vars.port}}\n");
    let err = refused(&p, "r");
    assert!(!err.contains("S3cret"), "{err}");
    assert!(
        err.starts_with("error: templates/db.hbs:1:21: missing variable 'vars.port'"),
        "{err}"
    );
}

#[test]
fn two_spellings_of_one_sysctl_key_are_one_setting() {
    let p = project_with_existing_state();
    p.file("roles/a.toml", "[sysctl]\n\"net.core.somaxconn\" = 4096\n")
        .file(
            "roles/b.toml",
            "include = [\"a\"]\n[sysctl]\n\"net/core/somaxconn\" = 128\n",
        );
    let err = refused(&p, "b");
    assert!(
        err.contains("conflict: sysctl:net.core.somaxconn is managed by role 'a'"),
        "{err}"
    );
}

#[test]
fn unknown_after_and_notify_show_their_line_and_caret() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/x\"\ncontent = \"x\\n\"\nafter = [\"file:/etc/nope\"]\nnotify = [\"service:ngnix\"]\n",
    );
    assert_eq!(
        refused(&p, "r"),
        "error: roles/r.toml:4:10: after: no resource 'file:/etc/nope' in this run\n  |\n\
         4 | after = [\"file:/etc/nope\"]\n  |          ^\n\
         error: roles/r.toml:5:11: notify: no resource 'service:ngnix' in this run\n  |\n\
         5 | notify = [\"service:ngnix\"]\n  |           ^\n\
         converge: 2 errors; nothing was changed\n"
    );
}

#[test]
fn an_ordering_cycle_shows_where_it_starts() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "[[directory]]\npath = \"/etc/a\"\nafter = [\"file:/etc/a/f\"]\n\n[[file]]\npath = \"/etc/a/f\"\ncontent = \"\"\n",
    );
    assert_eq!(
        refused(&p, "r"),
        "error: roles/r.toml:5:1: ordering cycle: file:/etc/a/f after directory:/etc/a after file:/etc/a/f\n  |\n\
         5 | [[file]]\n  | ^\n\
         converge: 1 error; nothing was changed\n"
    );
}

#[test]
fn json_failures_carry_a_kind_as_well_as_text() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[directory]]\npath = \"/srv/missing/x\"\n\n[[file]]\npath = \"/srv/missing/x/y\"\ncontent = \"y\\n\"\n",
    );
    let r = p.converge("check", &["r"], &["--format", "json"]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let failures: Vec<(String, String)> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["error_kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            (
                "directory:/srv/missing/x".to_owned(),
                "missing_parent".to_owned()
            ),
            ("file:/srv/missing/x/y".to_owned(), "skipped".to_owned()),
        ]
    );
}

#[test]
fn a_service_or_package_timeout_without_a_unit_is_located() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n\n[[package]]\nname = \"curl\"\ntimeout = \"30\"\n\n[[service]]\nname = \"web\"\ntimeout = \"0s\"\n",
    );
    let err = refused(&p, "r");
    assert!(
        err.contains("roles/r.toml:5:11: invalid timeout '30': expected a duration with a unit"),
        "{err}"
    );
    assert!(
        err.contains(
            "roles/r.toml:9:11: invalid timeout '0s': expected a duration with a unit, more than 0"
        ),
        "{err}"
    );
    assert!(
        err.ends_with("converge: 2 errors; nothing was changed\n"),
        "{err}"
    );
}

#[test]
fn a_broken_or_closed_stderr_never_stops_a_run() {
    // A FIFO where /etc/passwd should be makes the run warn while it reads the owners.
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/x\"\ncontent = \"x\\n\"\nowner = \"nobody\"\n",
    );
    nix::unistd::mkfifo(&p.at("/etc/passwd"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let src = p.src().display().to_string();
    let root = p.root().display().to_string();
    let facts = p.facts_path().display().to_string();
    let args = [
        "check", "--source", &src, "--root", &root, "--facts", &facts, "--role", "r",
    ];
    // A pipe whose reader is gone: every write to stderr fails with EPIPE.
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = p.command(&args).stderr(writer).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("owner 'nobody' does not exist (not in /etc/passwd)"));
    // `2>&-`: no stderr at all.
    let out = support::converge_with(
        &["sh", "-c", "exec \"$0\" \"$@\" 2>&-"],
        &args,
        &p.config_path(),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(4));
}

#[test]
fn a_reader_gone_from_stdout_never_makes_a_command_panic() {
    // `converge history | head -0`: the reader is gone before the first write, which then
    // fails with EPIPE. The command's work stands and so does its exit code.
    let p = project_with_existing_state();
    let (src, root, facts) = (
        p.src().display().to_string(),
        p.root().display().to_string(),
        p.facts_path().display().to_string(),
    );
    let state = p.state_dir().display().to_string();
    let before = p.tree();
    let with_source = |cmd: &'static str| {
        let mut args = vec![cmd, "--source", &src, "--facts", &facts, "--role", "ok"];
        if cmd != "render" {
            args.extend(["--root", &root]);
        }
        args
    };
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (vec!["history"], 0),
        (vec!["history", "--format", "json"], 0),
        (vec!["pause", "--for", "1h"], 0),
        (vec!["status"], 0),
        (vec!["status", "--format", "json"], 0),
        (vec!["resume"], 0),
        (vec!["facts", "--root", &root], 0),
        (vec!["validate", "--source", &src], 0),
        (vec!["compare", "--print-ignore"], 0),
        (with_source("render"), 0),
        (with_source("check"), 2),
    ];
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for (args, code) in commands {
        let shown = p.run(&args);
        assert_eq!(
            shown.code, code,
            "{args:?}: {}{}",
            shown.stdout, shown.stderr
        );
        assert_ne!(shown.stdout, "", "{args:?} prints nothing to lose");
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let out = p.command(&args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    }
    assert_eq!(p.tree(), before, "a check or render changed the root");
}

#[test]
fn health_check_durations_and_retries_are_bounded() {
    let p = project_with_existing_state();
    p.file(
        "roles/r.toml",
        "include = [\"ok\"]\n\n[[health]]\nname = \"slow\"\ntcp = \"127.0.0.1:80\"\ninterval = \"1000h\"\ntimeout = \"11m\"\nretries = 100000\n\n[[health]]\nname = \"long\"\ntcp = \"127.0.0.1:80\"\ntimeout = \"10m\"\nretries = 10\n",
    );
    let err = refused(&p, "r");
    assert_eq!(
        err,
        "error: roles/r.toml:7:11: invalid timeout '11m': expected at most 10m\n  |\n7 | timeout = \"11m\"\n  |           ^\n\
         error: roles/r.toml:6:12: invalid interval '1000h': expected at most 10m\n  |\n6 | interval = \"1000h\"\n  |            ^\n\
         error: roles/r.toml:8:11: invalid retries 100000: expected at most 100\n  |\n8 | retries = 100000\n  |           ^\n\
         error: roles/r.toml:10:1: health check 'long' could hold the run for 1h 50m 10s when it keeps failing ((retries + 1) × timeout + retries × interval): expected at most 1h\n   |\n10 | [[health]]\n   | ^\n\
         converge: 4 errors; nothing was changed\n"
    );
}

#[test]
fn credentials_in_a_source_url_are_never_shown() {
    let p = Project::new();
    let state = tempfile::tempdir().unwrap();
    let state = state.path().display().to_string();
    // Nothing listens on port 1: the fetch fails, and says where it went.
    let run = p.converge_from(
        "http://deploy:s3cret@127.0.0.1:1/b",
        "check",
        &["r"],
        &["--state-dir", &state, "-v"],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
    assert!(!run.stderr.contains("deploy"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("http://***@127.0.0.1:1/b/rollout.json: "),
        "{}",
        run.stderr
    );
}

#[test]
fn a_syntax_error_in_a_role_with_sensitive_content_shows_no_line() {
    for (content, col) in [
        ("content = \"password = S3cret\" oops", 31),
        ("content = 'password = S3cret", 29),
        ("content = \"\"\"password = S3cret\"\"", 33),
    ] {
        let p = project_with_existing_state();
        p.file(
            "roles/r.toml",
            &format!("[[file]]\npath = \"/etc/db.conf\"\nsensitive = true\n{content}\n"),
        );
        let err = refused(&p, "r");
        assert!(!err.contains("S3cret"), "{err}");
        assert!(
            err.starts_with(&format!("error: roles/r.toml:4:{col}: ")),
            "{err}"
        );
        assert!(
            err.contains("(line not shown: the file declares sensitive content)\n"),
            "{err}"
        );
    }
}

#[test]
fn a_broken_partial_fails_only_the_roles_that_use_it() {
    let p = project_with_existing_state();
    p.file(
        "templates/partials/broken.hbs",
        "{{#if vars.x}}\nunclosed\n",
    )
    .file("templates/partials/head.hbs", "# {{> broken}}\n")
    .file("templates/uses.hbs", "{{> head}}\nbody\n")
    .file(
        "roles/uses.toml",
        "[[file]]\npath = \"/etc/uses\"\ntemplate = \"uses.hbs\"\n",
    );
    let check = p.check(&["ok"]);
    assert_eq!(check.code, 2, "{check:?}");
    let apply = p.apply(&["ok"]);
    assert_eq!(apply.code, 2, "{apply:?}");
    assert_eq!(std::fs::read_to_string(p.at("/etc/motd")).unwrap(), "new\n");
    // Through another partial, the role that uses it gets the partial's own error.
    let err = refused(&p, "uses");
    assert!(
        err.starts_with("error: templates/partials/broken.hbs:"),
        "{err}"
    );
    assert!(err.contains("template syntax"), "{err}");
    // validate checks the tree as a whole: there the partial is an error once.
    let src = p.src().display().to_string();
    let facts = p.facts_path().display().to_string();
    let run = p.run(&["validate", "--source", &src, "--facts", &facts]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.stderr
            .matches("error: templates/partials/broken.hbs:")
            .count(),
        1,
        "{}",
        run.stderr
    );
}

/// Each agent.toml value that no run can use, found only when the run gets to it, is
/// reported at its line and column in agent.toml, and nothing changes.
#[test]
fn agent_config_errors_name_their_line() {
    let p = project_with_existing_state();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let state = dir.path().join("state");
    let src = p.src().display().to_string();
    let not_a_bundle = dir.path().join("empty");
    std::fs::create_dir(&not_a_bundle).unwrap();
    let no_key = dir.path().join("keys/missing.pub");
    let bad_key = dir.path().join("bad.pub");
    std::fs::write(&bad_key, "untrusted comment: x\nnot a key\n").unwrap();
    let state_file = dir.path().join("file");
    std::fs::write(&state_file, "").unwrap();
    let base = |source: &str, state: &std::path::Path| {
        format!(
            "source = \"{source}\"\nstate_dir = \"{}\"\n",
            state.display()
        )
    };
    let cases = [
        (
            format!("{}roles = [\"ok\", \"nope\"]\n", base(&src, &state)),
            "3:16: role 'nope' not found: there is no roles/nope.toml",
        ),
        (
            base("ftp://config.example.com/b/", &state),
            "1:10: invalid source \"ftp://config.example.com/b/\": unsupported scheme \"ftp\"",
        ),
        (
            base("https://[::1/b/", &state),
            "1:10: invalid source \"https://[::1/b/\": invalid IPv6 address",
        ),
        (
            base(&not_a_bundle.display().to_string(), &state),
            "1:10: source is neither a source tree (no roles/ directory) nor a published bundle (no manifest.json)",
        ),
        (
            format!(
                "{}roles = [\"ok\"]\ntrusted_keys = [\"{}\"]\n",
                base("https://config.example.com/b/", &state),
                no_key.display()
            ),
            "4:17: trusted key ",
        ),
        (
            format!(
                "{}roles = [\"ok\"]\ntrusted_keys = [\"{}\", \"{}\"]\n",
                base("https://config.example.com/b/", &state),
                no_key.display(),
                bad_key.display()
            ),
            "4:17: trusted key ",
        ),
        (
            format!(
                "{}roles = [\"ok\"]\ntrusted_keys = [\"{}\"]\n",
                base("https://config.example.com/b/", &state),
                bad_key.display()
            ),
            "4:17: trusted key ",
        ),
        (
            format!("{}roles = [\"ok\"]\n", base(&src, &state_file.join("sub"))),
            "2:13: state dir ",
        ),
    ];
    let before = p.tree();
    for (text, want) in cases {
        std::fs::write(&config, &text).unwrap();
        let facts = p.facts_path().display().to_string();
        let root = p.root().display().to_string();
        let args = ["--config", config.to_str().unwrap(), "--facts", &facts];
        let r = p.run(&[&["check", "--root", &root][..], &args[..]].concat());
        let want = format!("error: {}:{want}", config.display());
        assert_eq!(r.code, 1, "{text}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.starts_with(&want),
            "{text}\nwant {want}\ngot {}",
            r.stderr
        );
        assert!(
            r.stderr
                .ends_with("converge: 1 error; nothing was changed\n"),
            "{}",
            r.stderr
        );
        assert_eq!(p.tree(), before, "the root changed");
    }
}

/// Every schema error of a role file is reported, each at its place, not only the first;
/// an octal mode written as a number gets a hint to quote it.
#[test]
fn validate_reports_every_schema_error_of_a_file() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/a\"\nmdoe = \"0644\"\ncontent = \"\"\n\n\
         [[file]]\npath = \"/etc/b\"\nmode = 644\ncontent = \"\"\n\n\
         [[service]]\nname = \"x\"\nenabled = \"yes\"\n",
    );
    let src = p.src();
    let r = p.run(&["validate", "--source", src.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        r.stderr,
        "error: roles/r.toml:3:1: unknown field `mdoe`, expected one of `path`, `content`, \
         `template`, `source`, `owner`, `group`, `mode`, `sensitive`, `validate`, `vars`, \
         `after`, `notify`\n  |\n3 | mdoe = \"0644\"\n  | ^\n\
         error: roles/r.toml:8:8: invalid type: integer `644`, expected a string: mode is a \
         string of octal digits: write mode = \"0644\"\n  |\n8 | mode = 644\n  |        ^\n\
         error: roles/r.toml:13:11: invalid type: string \"yes\", expected a boolean\n   |\n\
         13 | enabled = \"yes\"\n   |           ^\n\
         validate: 3 errors in 1 role\n"
    );
}

/// The same for the sections that came later: one schema error in each, all reported.
#[test]
fn validate_reports_a_schema_error_in_each_newer_section() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[sysfs]\n\"kernel/mm/transparent_hugepage/enabled\" = { value = \"never\", persit = false }\n\n\
         [[timer]]\nname = \"backup\"\non_calendar = \"daily\"\ncomand = \"/usr/local/bin/backup\"\n\n\
         [[kernel_module]]\nname = \"br_netfilter\"\nloaded = \"yes\"\n\n\
         [[nftables]]\nfamily = \"inet\"\ntable = \"filter\"\ncontnt = \"chain input {}\"\n\n\
         [[package]]\nname = \"tool\"\nsource = 5\n",
    );
    let src = p.src();
    let r = p.run(&["validate", "--source", src.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let firsts: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        firsts,
        [
            "error: roles/r.toml:2:44: unknown field `persit`, expected `value` or `persist`",
            "error: roles/r.toml:7:1: unknown field `comand`, expected one of `name`, `ensure`, \
             `enabled`, `state`, `masked`, `description`, `on_calendar`, `on_boot`, `on_active`, \
             `on_unit_active`, `persistent`, `randomized_delay`, `accuracy`, `command`, `user`, `sensitive`, \
             `service`, `timer`, `timeout`, `after`",
            "error: roles/r.toml:11:1: unknown field `loaded`, expected one of `name`, `ensure`, \
             `options`, `after`",
            "error: roles/r.toml:16:1: unknown field `contnt`, expected one of `family`, `table`, \
             `content`, `template`, `source`, `vars`, `purge`, `after`, `notify`",
            "error: roles/r.toml:20:10: invalid type: integer `5`, expected a string",
        ]
    );
    assert!(
        r.stderr.ends_with("validate: 5 errors in 1 role\n"),
        "{}",
        r.stderr
    );
}
