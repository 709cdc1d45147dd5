//! Sources built to break the engine (recursion, deep nesting, huge lines): each one is a
//! clear, located error with exit 1, never an abort or a hang, and the root stays as it was.

mod fixture;

use fixture::Project;

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
        "error: templates/partials/b.hbs:2:15: partials include each other: a -> b -> a"
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
