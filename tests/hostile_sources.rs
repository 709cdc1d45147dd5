//! Sources built to break the engine (recursion, deep nesting, huge lines): each one is a
//! clear, located error with exit 1, never an abort or a hang, and the root stays as it was.

mod support;

use support::Project;

/// Check and apply both refuse `role` with exit 1 and the same message; the root is untouched.
fn refused(p: &Project, role: &str) -> String {
    let before = p.tree();
    let check = p.check(&[role]);
    assert_eq!(check.code, 1, "check: {}{}", check.stdout, check.stderr);
    let apply = p.apply(&[role]);
    assert_eq!(apply.code, 1, "apply: {}{}", apply.stdout, apply.stderr);
    assert_eq!(apply.stderr, check.stderr);
    assert_eq!(p.tree(), before, "the root changed");
    apply.stderr
}

fn file_from_template(p: &Project, template: &str) {
    p.file(
        "roles/r.toml",
        &format!("[[file]]\npath = \"/etc/x\"\ntemplate = \"{template}\"\n"),
    );
}

#[test]
fn mutually_recursive_partials_are_named_not_a_stack_overflow() {
    let p = Project::new();
    file_from_template(&p, "t.hbs");
    p.file("templates/t.hbs", "{{> a}}\n")
        .file("templates/partials/a.hbs", "a\n{{> b}}\n")
        .file(
            "templates/partials/b.hbs",
            "b\n{{#if vars.x}}{{> a}}{{/if}}\n",
        );
    let err = refused(&p, "r");
    assert_eq!(
        err.lines().next().unwrap(),
        "error: templates/partials/b.hbs:2:15: partials include each other: a -> b -> a (rendering /etc/x for role 'r')"
    );
}

#[test]
fn twenty_thousand_nested_blocks_are_refused_at_once() {
    let p = Project::new();
    file_from_template(&p, "t.hbs");
    let n = 20_000;
    p.file(
        "templates/t.hbs",
        &format!("{}x{}", "{{#if vars.a}}\n".repeat(n), "{{/if}}\n".repeat(n)),
    );
    let err = refused(&p, "r");
    assert_eq!(
        err.lines().next().unwrap(),
        "error: templates/t.hbs:101:1: blocks nest deeper than 100 levels here (rendering /etc/x for role 'r')"
    );
    let validate = p.run(&["validate", "--source", &p.src().display().to_string()]);
    assert_eq!(validate.code, 1, "{}", validate.stderr);
    assert!(validate.stderr.contains("blocks nest deeper than 100"));
}

#[test]
fn a_chain_of_ten_thousand_role_includes_is_an_error() {
    let p = Project::new();
    for i in 0..10_000 {
        p.file(
            &format!("roles/r{i:05}.toml"),
            &format!("include = [\"r{:05}\"]\n", i + 1),
        );
    }
    let err = refused(&p, "r00000");
    assert_eq!(
        err.lines().next().unwrap(),
        "error: roles/r00063.toml:1:12: includes nest deeper than 64 roles: \
         r00000 -> r00001 -> r00002 -> ... -> r00063 -> r00064"
    );
}

#[test]
fn control_characters_empty_names_and_reserved_ids_are_refused_where_written() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        r#"[[file]]
path = "/etc/a\u0000b"
content = "x"

[[file]]
path = "/etc/new\nline"
content = "x"

[[symlink]]
path = "/etc/l"
target = ""

[[exec]]
name = " "
command = "true"

[[user]]
name = "svc"
uid = 4294967295

[[group]]
name = "grp"
gid = 4294967295
"#,
    );
    let validate = p.run(&["validate", "--source", &p.src().display().to_string()]);
    assert_eq!(validate.code, 1);
    let heads: Vec<&str> = validate
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: roles/"))
        .collect();
    assert_eq!(
        heads,
        [
            "error: roles/r.toml:2:8: invalid path: '/etc/a\\0b' contains the control character '\\0'",
            "error: roles/r.toml:6:8: invalid path: '/etc/new\\nline' contains the control character '\\n'",
            "error: roles/r.toml:11:10: empty symlink target: expected the path the link points at",
            "error: roles/r.toml:23:7: gid 4294967295 is reserved ((uid_t)-1 means \"no change\"); expected 0 to 4294967294",
            "error: roles/r.toml:19:7: uid 4294967295 is reserved ((uid_t)-1 means \"no change\"); expected 0 to 4294967294",
            "error: roles/r.toml:14:8: empty exec name: expected a name for the report and for after/notify",
        ],
        "{}",
        validate.stderr
    );
    assert_eq!(p.check(&["r"]).code, 1);
}

#[test]
fn an_error_on_a_two_megabyte_line_prints_a_window_of_it() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        &format!(
            "[[file]]\npath = \"/etc/x\"\ncontent = \"{}\" mdoe = 1\n",
            "x".repeat(2 << 20)
        ),
    );
    let err = refused(&p, "r");
    assert!(err.len() < 1000, "{} bytes", err.len());
    assert!(err.starts_with("error: roles/r.toml:3:"), "{err}");
}

#[test]
fn a_fifo_among_a_source_trees_roles_or_partials_is_refused_not_read() {
    let p = Project::new();
    file_from_template(&p, "t.hbs");
    p.file("templates/t.hbs", "plain\n");
    // Nothing ever writes to these FIFOs: reading one would block the run forever.
    nix::unistd::mkfifo(&p.src().join("roles/f.toml"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = refused(&p, "f");
    assert!(
        err.contains(
            "roles/f.toml: not a regular file (a FIFO, device or socket is refused, not read)"
        ),
        "{err}"
    );
    std::fs::remove_file(p.src().join("roles/f.toml")).unwrap();
    p.file("templates/partials/dummy.hbs", "x\n")
        .file("templates/t.hbs", "{{> p}}\n");
    nix::unistd::mkfifo(
        &p.src().join("templates/partials/p.hbs"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    let err = refused(&p, "r");
    assert!(err.contains("not a regular file"), "{err}");
}
