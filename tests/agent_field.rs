//! What operators hit with the agent in the field: a check that must leave the agent's state
//! alone, bundles that cannot plan, and what monitoring sees of every run.

mod agent_support;
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
    for file in ["sync.json", "last-run.json", "metrics/converge.prom"] {
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
#[ignore = "needs root (container tier, scripts/test)"]
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
#[ignore = "needs root (container tier, scripts/test)"]
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
    let check_metrics =
        std::fs::read_to_string(s.state.join("metrics/converge-check.prom")).unwrap();
    assert!(
        check_metrics
            .lines()
            .any(|l| l == "converge_drift_detected{mode=\"check\"} 1"),
        "{check_metrics}"
    );
    let apply_metrics = std::fs::read_to_string(s.state.join("metrics/converge.prom")).unwrap();
    assert!(!apply_metrics.contains("mode=\"check\""), "{apply_metrics}");

    // The next apply takes it.
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.record()["source"]["freshness"], "fresh");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn publish_refuses_a_template_validate_refuses() {
    let s = Served::new();
    s.p.file(
        "templates/app.conf.hbs",
        "{{#if vars.debug}}\nversion = 2\n",
    );
    let out = s.p.src().parent().unwrap().join("out2");
    let src = s.p.src().display().to_string();
    let facts = s.p.facts_path().display().to_string();
    let r =
        s.p.run(&["publish", &src, out.to_str().unwrap(), "--facts", &facts]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.starts_with("error: templates/app.conf.hbs:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .ends_with("publish: 1 error in 1 role; nothing was published\n"),
        "{}",
        r.stderr
    );
    assert!(!out.join("manifest.json").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_bundle_that_cannot_plan_here_is_refused_and_the_last_known_good_converged() {
    let s = Served::new();
    let config = s.config("");
    assert_eq!(s.run_config("apply", &config).code, 2);
    let good = s.record()["source"]["bundle_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Valid where it was published (a host with eth0), not on this host (lo only).
    s.p.file(
        "templates/app.conf.hbs",
        "version = 2\nlisten = {{facts.interfaces.eth0.ipv4.[0]}}\n",
    );
    let publisher_facts = s.p.src().parent().unwrap().join("publisher-facts.json");
    std::fs::write(
        &publisher_facts,
        support::FACTS.replace(
            "\"lo\": {",
            "\"eth0\": {\"ipv4\": [\"10.0.0.5\"], \"ipv6\": []}, \"lo\": {",
        ),
    )
    .unwrap();
    let r = s.p.run(&[
        "publish",
        &s.p.src().display().to_string(),
        s.out.to_str().unwrap(),
        "--facts",
        publisher_facts.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let bad = r.stdout.split_whitespace().nth(1).unwrap().to_owned();

    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "bundle {bad} cannot be planned on this host: templates/app.conf.hbs:2:"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("converging the last known good {good}")),
        "{}",
        r.stderr
    );
    let record = s.record();
    assert_eq!(record["source"]["freshness"], "refused");
    assert_eq!(record["source"]["bundle_id"], good.as_str());
    assert_eq!(record["exit_code"], 0);
    let metrics = std::fs::read_to_string(s.state.join("metrics/converge.prom")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "converge_source_stale{mode=\"apply\"} 1"),
        "{metrics}"
    );
    assert_eq!(
        std::fs::read_link(s.state.join("current")).unwrap(),
        Path::new("bundles").join(&good)
    );
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );

    // The next run is refused again from the manifest alone: nothing downloaded.
    let before = s.requests().len();
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "bundle {bad} was refused earlier and is still served"
        )),
        "{}",
        r.stderr
    );
    s.nginx.wait_for_requests(before + 2);
    let polled: Vec<_> = s.requests()[before..].to_vec();
    // The rollout file (none here), then the manifest; no object of the refused bundle.
    assert_eq!(
        polled,
        [
            ("/rollout.json".to_owned(), 404),
            ("/manifest.json".to_owned(), 200)
        ]
    );
    assert_eq!(s.record()["source"]["freshness"], "refused");

    // A fixed publish goes through.
    s.p.file("templates/app.conf.hbs", "version = 3\n");
    publish(&s.p.src(), &s.out, None);
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.record()["source"]["freshness"], "fresh");
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 3\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_that_cannot_run_still_updates_the_record_and_the_metrics() {
    let s = Served::new();
    let config = s.config("");
    assert_eq!(s.run_config("apply", &config).code, 2);
    let metrics = || std::fs::read_to_string(s.state.join("metrics/converge.prom")).unwrap();
    assert!(metrics()
        .lines()
        .any(|l| l == "converge_last_run_exit_code{mode=\"apply\"} 2"));
    let root = s.p.root().display().to_string();
    let facts = s.p.facts_path().display().to_string();
    let r = s.p.run(&[
        "apply", "--config", &config, "--root", &root, "--facts", &facts, "--role", "nosuch",
    ]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.record()["exit_code"], 1);
    let text = metrics();
    assert!(
        text.lines()
            .any(|l| l == "converge_last_run_exit_code{mode=\"apply\"} 1"),
        "{text}"
    );
    assert!(!text.contains("converge_resources"), "{text}");
    // The good bundle stays current: a --role typo is not the bundle's fault.
    assert_eq!(s.record()["source"]["freshness"], "unchanged");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_source_that_never_answers_falls_back_at_the_deadline_and_the_duration_counts_it() {
    let s = Served::new();
    let config = s.config("");
    assert_eq!(s.run_config("apply", &config).code, 2);
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let config = s.state.parent().unwrap().join("silent.toml");
    std::fs::write(
        &config,
        format!(
            "source = \"{url}\"\nroles = [\"web\"]\nstate_dir = \"{}\"\n[fetch]\ndeadline = \"1s\"\ntimeout = \"60s\"\n",
            s.state.display()
        ),
    )
    .unwrap();
    let r = s.run_config("apply", config.to_str().unwrap());
    drop(silent);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // rollout.json is the first file of every poll.
    let why = format!("{url}rollout.json: timed out: no complete answer within the 1s fetch deadline (fetch.deadline)");
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains(&why)),
        "{}",
        r.stderr
    );
    assert_eq!(s.record()["source"]["freshness"], "stale");
    assert_eq!(s.record()["source"]["reason"], why.as_str());
    let metrics = std::fs::read_to_string(s.state.join("metrics/converge.prom")).unwrap();
    let duration: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("converge_last_run_duration_seconds{mode=\"apply\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        duration >= 1.0,
        "the second waited for the source is part of the run: {metrics}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_agent_logs_new_bundles_and_one_summary_line_per_run_at_the_default_level() {
    let s = Served::new();
    // The agent converges the live root: only a file beside the state dir.
    let marker = s.state.parent().unwrap().join("agent-marker");
    s.p.file(
        "roles/web.toml",
        &format!(
            "[[file]]\npath = \"{}\"\ncontent = \"x\\n\"\n",
            marker.display()
        ),
    );
    publish(&s.p.src(), &s.out, None);
    let config = s.config("");
    let r = s.p.run(&["agent", "--config", &config, "--once"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let id = s.record()["source"]["bundle_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        r.stderr.contains(&format!("new bundle {id} (created ")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("signed by nobody: unverified"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("is used UNVERIFIED")),
        "{}",
        r.stderr
    );
    let summaries: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("apply: 1 resource,"))
        .collect();
    assert_eq!(summaries.len(), 1, "{}", r.stderr);
    assert!(
        summaries[0].contains(&format!(
            "apply: 1 resource, 1 changed, 0 failed; bundle {id} (fresh); exit 2"
        )),
        "{}",
        summaries[0]
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_timer_run_logs_each_outcome_by_name_failures_as_warnings_and_its_summary() {
    let s = Served::new();
    s.p.file(
        "roles/web.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hi\\n\"\n\n[[file]]\npath = \"/no/such/dir/app.conf\"\ncontent = \"x\\n\"\n",
    );
    publish(&s.p.src(), &s.out, None);
    let config = s.config("");
    // What converge.service runs; JOURNAL_STREAM says "under systemd" (with no journald
    // socket here, the lines go to stderr, as they would to the journal).
    let out = support::converge(&["apply", "--config", &config, "--root"])
        .arg(s.p.root())
        .arg("--facts")
        .arg(s.p.facts_path())
        .env("JOURNAL_STREAM", "8:1234")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    let id = s.record()["source"]["bundle_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let line = |level: &str, text: &str| {
        stderr
            .lines()
            .any(|l| l.trim_start().starts_with(level) && l.contains(text))
    };
    assert!(line("INFO", " changed file:/etc/motd "), "{stderr}");
    assert!(
        line("WARN", " failed file:/no/such/dir/app.conf: "),
        "{stderr}"
    );
    assert!(
        line(
            "WARN",
            &format!("apply: 2 resources, 1 changed, 1 failed; bundle {id} (fresh); exit 6")
        ),
        "{stderr}"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_source_tree_keeps_the_agent_configs_roles_and_vars() {
    let s = Served::new();
    s.p.file(
        "roles/other.toml",
        "[[file]]\npath = \"/etc/other\"\ncontent = \"no\\n\"\n",
    );
    s.p.file("templates/app.conf.hbs", "port = {{vars.port}}\n");
    let config = s.config("[vars]\nport = 8080\n");
    let root = s.p.root().display().to_string();
    let facts = s.p.facts_path().display().to_string();
    let src = s.p.src().display().to_string();
    let r = s.p.run(&[
        "apply", "--config", &config, "--source", &src, "--root", &root, "--facts", &facts,
    ]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "port = 8080\n"
    );
    assert!(!s.p.at("/etc/other").exists());
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn trusted_keys_from_the_command_line_are_required_of_the_bundle() {
    let s = Served::new();
    let keys = s.state.parent().unwrap().join("keys");
    let r = s.p.run(&["keygen", keys.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let public = keys.join("converge.pub").display().to_string();
    // The served bundle is unsigned: with --trusted-key it is refused, and there is no
    // last known good yet.
    let r = s.apply(&["--trusted-key", &public]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("signature"), "{}", r.stderr);
    publish(&s.p.src(), &s.out, Some(&keys.join("converge.key")));
    let r = s.apply(&["--trusted-key", &public]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("UNVERIFIED"), "{}", r.stderr);
    let sync: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.state.join("sync.json")).unwrap()).unwrap();
    assert!(sync["signer"].is_string(), "{sync}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_default_textfile_is_readable_by_node_exporter_and_a_write_failure_names_path_and_reason() {
    use std::os::unix::fs::PermissionsExt;
    let s = Served::new();
    let config = s.config("");
    assert_eq!(s.run_config("apply", &config).code, 2);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.state), 0o711);
    assert_eq!(mode(&s.state.join("metrics")), 0o755);
    assert_eq!(mode(&s.state.join("metrics/converge.prom")), 0o644);
    assert_eq!(mode(&s.state.join("bundles")), 0o700);
    assert_eq!(mode(&s.state.join("last-run.json")), 0o600);

    let config = s.config("metrics_file = \"/dev/null/converge.prom\"\n");
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(
            "cannot write the metrics textfile /dev/null/converge.prom: Not a directory (os error 20)"
        ),
        "{}",
        r.stderr
    );
}
