//! What operators hit with the agent in the field: a check that must leave the agent's state
//! alone, bundles that cannot plan, and what monitoring sees of every run.

mod agent_support;
mod fixture;
mod support;

use std::collections::BTreeMap;
use std::path::Path;

use agent_support::{publish, Served};
use support::Nginx;

/// What the agent keeps between runs: its bundle links, sync state, bundles, objects, and
/// apply's record and metrics. (Locks and a check's own record are left out.)
fn agent_state(state: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for link in ["current", "previous"] {
        let target = std::fs::read_link(state.join(link)).ok();
        out.insert(link.to_owned(), format!("{target:?}"));
    }
    for file in ["sync.json", "last-run.json", "converge.prom"] {
        let text = std::fs::read_to_string(state.join(file)).ok();
        out.insert(file.to_owned(), format!("{text:?}"));
    }
    for dir in ["bundles", "objects"] {
        let mut names: Vec<String> = std::fs::read_dir(state.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        out.insert(dir.to_owned(), names.join(","));
    }
    out
}

#[test]
fn a_check_against_another_source_leaves_the_agent_on_its_own() {
    let prod = Served::new();
    let config = prod.config("");
    let r = prod.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let before = agent_state(&prod.state);

    // Staging: the same roles with another template, published later (so newer).
    let staging_src = prod.p.src().parent().unwrap().join("staging-src");
    let staging_out = prod.p.src().parent().unwrap().join("staging-out");
    std::fs::create_dir_all(&staging_src).unwrap();
    for d in ["roles", "templates"] {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(prod.p.src().join(d))
            .arg(&staging_src)
            .status()
            .unwrap();
        assert!(status.success());
    }
    std::fs::write(
        staging_src.join("templates/app.conf.hbs"),
        "version = staging\n",
    )
    .unwrap();
    publish(&staging_src, &staging_out, None);
    let staging = Nginx::serve(&staging_out);
    let staging_url = format!("{}/", staging.url());

    let root = prod.p.root().display().to_string();
    let facts = prod.p.facts_path().display().to_string();
    let check = |source: &str| {
        prod.p.run(&[
            "check", "--config", &config, "--source", source, "--root", &root, "--facts", &facts,
        ])
    };
    let r = check(&staging_url);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("+version = staging"), "{}", r.stdout);
    assert_eq!(
        agent_state(&prod.state),
        before,
        "a check changed the agent's state"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(prod.state.join("last-check.json")).unwrap())
            .unwrap();
    assert_eq!(record["source"]["url"], staging_url.as_str());
    assert_eq!(record["source"]["freshness"], "fresh");
    assert_eq!(record["report"]["mode"], "check");
    // No scratch is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(prod.state.join("bundles"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The next timer run stays on prod: one 304, nothing to do.
    let r = prod.run_config("apply", &config);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(prod.record()["source"]["freshness"], "unchanged");
    assert_eq!(
        std::fs::read_to_string(prod.p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );
}

#[test]
fn a_check_of_a_new_publish_shows_it_without_making_it_current() {
    let s = Served::new();
    let config = s.config("");
    assert_eq!(s.run_config("apply", &config).code, 2);
    s.p.file(
        "templates/app.conf.hbs",
        "version = 2\nhost = {{facts.hostname}}\n",
    );
    publish(&s.p.src(), &s.out, None);
    let before = agent_state(&s.state);
    let r = s.run_config("check", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("+version = 2"), "{}", r.stdout);
    assert_eq!(agent_state(&s.state), before);
    // The check left apply's metrics alone and wrote its own series.
    let check_metrics = std::fs::read_to_string(s.state.join("converge-check.prom")).unwrap();
    assert!(
        check_metrics
            .lines()
            .any(|l| l == "converge_drift_detected{mode=\"check\"} 1"),
        "{check_metrics}"
    );
    let apply_metrics = std::fs::read_to_string(s.state.join("converge.prom")).unwrap();
    assert!(!apply_metrics.contains("mode=\"check\""), "{apply_metrics}");

    // The next apply takes it.
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.record()["source"]["freshness"], "fresh");
}
