//! Descriptors stay bounded whatever the number of managed directories: a tree of 1,100
//! directories converges under `ulimit -n 256`, first apply, no-op apply and check alike, and
//! so does the agent, run after run.

mod agent_support;
mod support;

use agent_support::{publish, Served};
use support::Project;

const DIRS: usize = 1_100;

/// A role with `DIRS` directories under `base`, one templated file in each.
fn wide_role(base: &str) -> String {
    let mut role = String::from("[vars]\ncommon = \"shared\"\n");
    for d in 0..DIRS {
        role.push_str(&format!("\n[[directory]]\npath = \"{base}/d{d:04}\"\n"));
    }
    for d in 0..DIRS {
        role.push_str(&format!(
            "\n[[file]]\npath = \"{base}/d{d:04}/app.conf\"\ntemplate = \"app.conf.hbs\"\n[file.vars]\nport = {}\n",
            20_000 + d
        ));
    }
    role
}

fn summary(run: &support::Run) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", run.stdout, run.stderr));
    report["summary"].clone()
}

#[test]
fn eleven_hundred_directories_converge_under_ulimit_n_256() {
    let p = Project::new();
    p.file("roles/wide.toml", &wide_role("/srv/app"))
        .file("templates/app.conf.hbs", "{{vars.common}} {{vars.port}}\n")
        .root_file("/srv/app/.keep", "")
        .limit_descriptors(256);
    let json = ["--format", "json"];

    let first = p.converge("apply", &["wide"], &json);
    assert_eq!(first.code, 2, "{}", first.stderr);
    let s = summary(&first);
    assert_eq!(
        (s["changed"].as_u64(), s["failed"].as_u64()),
        (Some(2 * DIRS as u64), Some(0))
    );
    assert_eq!(
        std::fs::read_to_string(p.at("/srv/app/d1099/app.conf")).unwrap(),
        "shared 21099\n"
    );

    for cmd in ["apply", "check"] {
        let again = p.converge(cmd, &["wide"], &json);
        assert_eq!(again.code, 0, "{cmd}: {}", again.stderr);
        let s = summary(&again);
        assert_eq!(
            (s["in_sync"].as_u64(), s["failed"].as_u64()),
            (Some(2 * DIRS as u64), Some(0)),
            "{cmd}"
        );
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_agent_converges_them_run_after_run_under_ulimit_n_256() {
    let s = Served::new();
    // The agent converges the live root: the directories go next to its state dir, so the
    // machine running the tests is never changed.
    let base = s.state.parent().unwrap().join("wide");
    std::fs::create_dir_all(&base).unwrap();
    s.p.file("roles/web.toml", &wide_role(&base.display().to_string()))
        .file("templates/app.conf.hbs", "{{vars.common}} {{vars.port}}\n");
    publish(&s.p.src(), &s.out, None);
    let config = s.config("interval = \"1s\"\nsplay = \"0s\"\n");
    s.p.limit_descriptors(256);
    let r = s.p.run(&["agent", "--config", &config, "--runs", "3"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let record = s.record();
    assert_eq!(record["exit_code"], 0, "{record}");
    assert_eq!(
        std::fs::read_to_string(base.join("d1099/app.conf")).unwrap(),
        "shared 21099\n"
    );
}
