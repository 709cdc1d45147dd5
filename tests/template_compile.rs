//! Compiling a template stays linear in its number of expressions: the property the vendored
//! handlebars is patched for (vendor/handlebars/PATCHED.md). Upstream looked the line and
//! column of every element up by walking the template from its first byte, so each
//! expression cost as much as the text before it.
//!
//! The work is counted, not timed: valgrind counts the instructions a compile executes, which
//! does not depend on the machine's load. A template eight times as long must cost about eight
//! times as much; with the quadratic lookup it cost 40 times as much.

use std::process::Command;

/// Lines of the smaller template; the larger has eight times as many.
const LINES: usize = 25;

/// Where the child run finds the number of lines to compile.
const LINES_VAR: &str = "CONVERGE_TEST_COMPILE_LINES";

/// `n` lines with an expression and an `{{#if}}...{{else}}...{{/if}}` each, the shape of a
/// generated config.
fn template(n: usize) -> String {
    (1..=n)
        .map(|i| format!("server {i} {{{{vars.host}}}}-{i} {{{{#if vars.flag}}}}up{{{{else}}}}down{{{{/if}}}};\n"))
        .collect()
}

/// The instructions valgrind counts for a run of this test binary that compiles a template
/// of `lines` lines (and does nothing else).
fn instructions(lines: usize) -> u64 {
    let exe = std::env::current_exe().expect("the test binary");
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts");
    let out = Command::new("valgrind")
        .args(["--tool=cachegrind", "--cache-sim=no"])
        .arg(format!("--cachegrind-out-file={}", counts.display()))
        .arg(exe)
        .args(["--exact", "compile_once", "--ignored", "--test-threads=1"])
        .env(LINES_VAR, lines.to_string())
        .output()
        .expect("valgrind runs (scripts/test-deps installs it)");
    assert!(
        out.status.success(),
        "valgrind run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(&counts).expect("valgrind's counts");
    report
        .lines()
        .find_map(|l| l.strip_prefix("summary:")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in valgrind's report:\n{report}"))
}

#[test]
#[ignore = "the measured child of compiling_is_linear_in_the_number_of_expressions"]
fn compile_once() {
    let lines = std::env::var(LINES_VAR).map_or(0, |n| n.parse().expect("a number of lines"));
    let text = template(lines);
    let compiled = handlebars::Template::compile(&text).expect("the template compiles");
    // Per line: the expression, the text after it, the `{{#if}}` block and the text that
    // runs on into the next line; and the text the first line starts with.
    assert_eq!(compiled.elements.len(), 4 * lines + usize::from(lines > 0));
}

#[test]
fn compiling_is_linear_in_the_number_of_expressions() {
    let base = instructions(0);
    let small = instructions(LINES) - base;
    let large = instructions(8 * LINES) - base;
    let ratio = large as f64 / small as f64;
    assert!(
        ratio < 16.0,
        "compiling {} lines took {ratio:.1} times the instructions of {LINES} lines \
         ({large} against {small}): compilation is no longer linear",
        8 * LINES
    );
}
