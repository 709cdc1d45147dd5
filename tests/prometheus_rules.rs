//! The Prometheus rules shipped in packaging/prometheus: they load, and `promtool test
//! rules` runs their tests (each alert fires on the fleet it is about and stays quiet
//! on the hosts beside it).

mod support;

use std::path::Path;
use std::process::Command;

use support::tools::{output_text, require_tool};

fn promtool(args: &[&str]) -> String {
    support::prometheus::ensure_installed();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/prometheus");
    let out = Command::new(require_tool("promtool"))
        .args(args)
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {args:?}\n{}",
        output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn shipped_rules_load() {
    let out = promtool(&["check", "rules", "converge.rules.yml"]);
    assert!(out.contains("SUCCESS: 11 rules found"), "{out}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn shipped_rules_pass_their_tests() {
    let out = promtool(&["test", "rules", "converge.rules.test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");
}
