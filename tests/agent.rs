//! The pull agent end to end: a published bundle served by a real nginx, conditional polls,
//! last known good under faults, signatures, the run lock, records and metrics.

mod agent_support;
mod support;

use std::process::Command;

use agent_support::{publish, Served};
use support::converge;

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn first_run_fetches_then_an_unchanged_poll_is_one_304_then_a_change_is_applied() {
    let s = Served::new();
    let r = s.apply(&[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );
    s.nginx.wait_for_requests(5);
    let first = s.requests();
    // Every poll asks for the rollout file first; without one the stable manifest counts.
    assert_eq!(first[0], ("/rollout.json".to_owned(), 404), "{first:?}");
    assert_eq!(first[1], ("/manifest.json".to_owned(), 200), "{first:?}");
    let objects = first
        .iter()
        .filter(|(p, st)| p.starts_with("/objects/") && *st == 200)
        .count();
    assert_eq!(objects, 2, "{first:?}");
    assert_eq!(s.record()["source"]["freshness"], "fresh");

    let r = s.apply(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    s.nginx.wait_for_requests(first.len() + 2);
    let poll = &s.requests()[first.len()..];
    assert_eq!(
        poll,
        [
            ("/rollout.json".to_owned(), 404),
            ("/manifest.json".to_owned(), 304)
        ]
    );
    assert_eq!(s.record()["source"]["freshness"], "unchanged");

    s.p.file(
        "templates/app.conf.hbs",
        "version = 2\nhost = {{facts.hostname}}\n",
    );
    publish(&s.p.src(), &s.out, None);
    let before = s.requests().len();
    let r = s.apply(&[]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("+version = 2"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 2\nhost = web1\n"
    );
    s.nginx.wait_for_requests(before + 3);
    let fetched: Vec<_> = s.requests()[before..]
        .iter()
        .filter(|(p, _)| p.starts_with("/objects/"))
        .cloned()
        .collect();
    assert_eq!(
        fetched.len(),
        1,
        "only the changed template is downloaded: {fetched:?}"
    );
    let record = s.record();
    assert_eq!(record["source"]["freshness"], "fresh");
    assert_eq!(record["source"]["fetched_objects"], 1);
    assert_eq!(record["exit_code"], 2);
    assert_eq!(record["report"]["summary"]["changed"], 1);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn source_down_converges_from_the_last_known_good_and_says_stale() {
    let s = Served::new();
    assert_eq!(s.apply(&[]).code, 2);
    std::fs::write(s.p.at("/etc/app.conf"), "drifted\n").unwrap();
    let Served {
        p, state, nginx, ..
    } = s;
    let url = format!("{}/", nginx.url());
    drop(nginx);
    let st = state.display().to_string();
    let r = p.converge_from(&url, "apply", &["web"], &["--state-dir", &st]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );
    assert!(
        r.stderr
            .contains(&format!("converge: source {url} is stale:")),
        "{}",
        r.stderr
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("last-run.json")).unwrap())
            .unwrap();
    assert_eq!(record["source"]["freshness"], "stale");
    let metrics = std::fs::read_to_string(state.join("metrics/converge.prom")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "converge_source_stale{mode=\"apply\"} 1"),
        "{metrics}"
    );
    assert!(metrics
        .lines()
        .any(|l| l == "converge_drift_detected{mode=\"apply\"} 1"));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn tampered_content_is_refused_and_nothing_from_it_is_applied() {
    let s = Served::new();
    assert_eq!(s.apply(&[]).code, 2);
    s.p.file("templates/app.conf.hbs", "version = 2 (evil)\n");
    publish(&s.p.src(), &s.out, None);
    // Corrupt the new object in place: its bytes no longer match the manifest.
    let evil = std::fs::read_dir(s.out.join("objects"))
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains("evil")
        })
        .unwrap()
        .path();
    std::fs::write(&evil, "version = 3 (tampered in transit)\n").unwrap();
    let r = s.apply(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );
    assert!(r.stderr.contains("is refused:"), "{}", r.stderr);
    assert_eq!(s.record()["source"]["freshness"], "refused");
    let current = std::fs::read_link(s.state.join("current")).unwrap();
    let current_text =
        std::fs::read_to_string(s.state.join(current).join("templates/app.conf.hbs")).unwrap();
    assert_eq!(current_text, "version = 1\nhost = {{facts.hostname}}\n");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn signed_bundles_are_required_when_keys_are_configured() {
    let s = Served::new();
    let (keys, _) = keygen(&s);
    publish(&s.p.src(), &s.out, Some(&keys.join("converge.key")));
    let pubkey = keys.join("converge.pub");
    let config = s.config(&format!(
        "trusted_keys = [\"{}\"]\n[vars]\nunused = 1\n",
        pubkey.display()
    ));
    let run = || s.run_config("apply", &config);
    let r = run();
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);

    // An unsigned (or differently signed) bundle is refused; the signed one stays current.
    s.p.file("templates/app.conf.hbs", "version = unsigned\n");
    std::fs::remove_file(s.out.join("manifest.json.minisig")).unwrap();
    publish(&s.p.src(), &s.out, None);
    let r = run();
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.record()["source"]["freshness"], "refused");
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_second_run_waits_for_the_lock_then_gives_up_naming_it() {
    let s = Served::new();
    assert_eq!(s.apply(&[]).code, 2);
    let lock = s.state.join("run.lock");
    // Hold the lock from another process for a while.
    // -o: the lock belongs to flock itself, so killing it releases the lock.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    // Held once a non-blocking flock of the same file is refused.
    support::wait_until(
        "flock holds the lock",
        std::time::Duration::from_secs(20),
        || {
            !Command::new("flock")
                .arg("-n")
                .arg(&lock)
                .arg("true")
                .status()
                .unwrap()
                .success()
        },
    );
    let config = s.config("lock_wait = \"500ms\"\n");
    let r = s.run_config("check", &config);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.starts_with(&format!(
            "converge: error: another converge run holds {} (pid unknown)",
            lock.display()
        )),
        "{}",
        r.stderr
    );
    let r = s.run_config("check", &config);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn nodes_toml_in_the_bundle_picks_the_roles() {
    let s = Served::new();
    s.p.file(
        "roles/db.toml",
        "[[file]]\npath = \"/etc/db.conf\"\ncontent = \"db\\n\"\n",
    );
    s.p.file("nodes.toml", "[[node]]\nhostname = \"db-*\"\nroles = [\"db\"]\n\n[[node]]\nhostname = \"web*\"\nroles = [\"web\"]\n");
    publish(&s.p.src(), &s.out, None);
    let url = format!("{}/", s.nginx.url());
    let st = s.state.display().to_string();
    let r = s.p.converge_from(&url, "apply", &[], &["--state-dir", &st]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(s.record()["roles"], serde_json::json!(["web"]));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_agent_loop_runs_on_its_interval_and_posts_reports() {
    use std::io::{BufRead, BufReader, Read, Write};
    let s = Served::new();
    // A report receiver: answers every POST with 200 and hands the bodies back.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let mut stream = reader.into_inner();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            bodies.push(String::from_utf8(body).unwrap());
        }
        bodies
    });
    let config = s.config(&format!(
        "interval = \"1s\"\nsplay = \"0s\"\nreport_url = \"http://127.0.0.1:{port}/reports\"\n"
    ));
    // The agent converges the live root: give it a role that only touches the state dir's
    // neighbourhood, so the machine running the tests is never changed.
    let marker = s.state.parent().unwrap().join("agent-marker");
    s.p.file(
        "roles/web.toml",
        &format!(
            "[[file]]\npath = \"{}\"\ncontent = \"by the agent\\n\"\n",
            marker.display()
        ),
    );
    publish(&s.p.src(), &s.out, None);
    let r = s.p.run(&["agent", "--config", &config, "--runs", "2"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "by the agent\n");
    let bodies = receiver.join().unwrap();
    let first: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let second: serde_json::Value = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(first["exit_code"], 2);
    assert_eq!(first["report"]["mode"], "apply");
    assert_eq!(second["exit_code"], 0);
    assert_eq!(second["source"]["freshness"], "unchanged");
    assert_eq!(s.record()["exit_code"], 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn two_concurrent_runs_one_converges_the_other_exits_naming_it() {
    let s = Served::new();
    // A run that holds the lock on the live root until the test lets it go, without changing
    // anything: an exec that waits for a gate file to go (a fixed sleep would let a slow
    // machine start the second run after the first ended).
    let marker = s.state.parent().unwrap().join("slow-ran");
    let gate = s.state.parent().unwrap().join("gate");
    std::fs::write(&gate, "").unwrap();
    s.p.file(
        "roles/web.toml",
        &format!(
            "[[exec]]\nname = \"slow\"\ncommand = \"while [ -e {} ]; do sleep 0.05; done; touch {}\"\n",
            gate.display(),
            marker.display()
        ),
    );
    publish(&s.p.src(), &s.out, None);
    let config = s.config("lock_wait = \"300ms\"\n");
    let first = support::converge(&["apply", "--config", &config, "--color", "never"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lock = s.state.join("run.lock");
    // Wait until the first run holds the lock (its pid is in the file).
    let pid = first.id().to_string();
    support::wait_until(
        "the first run holds the lock",
        std::time::Duration::from_secs(20),
        || std::fs::read_to_string(&lock).unwrap_or_default().trim() == pid,
    );
    let second = s.p.run(&["apply", "--config", &config]);
    std::fs::remove_file(&gate).unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(marker.exists());
    assert_eq!(second.code, 1, "{}{}", second.stdout, second.stderr);
    assert_eq!(second.stdout, "");
    assert!(
        second.stderr.starts_with(&format!(
            "converge: error: another converge run holds {} (pid {pid})",
            lock.display()
        )),
        "{}",
        second.stderr
    );
    // The first run's record is intact, not overwritten by the refused second one.
    assert_eq!(s.record()["exit_code"], 2);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_that_cannot_start_is_recorded_with_the_kind_of_failure() {
    let s = Served::new();
    // Nothing was ever verified here, and the source serves no manifest: nothing to converge.
    std::fs::remove_file(s.out.join("manifest.json")).unwrap();
    let config = s.config("");
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let record = s.record();
    assert_eq!(record["error_kind"], "http_status", "{record}");
    assert!(
        record["error"].as_str().unwrap().contains("404"),
        "{record}"
    );
}

/// `converge ARGS --config CONFIG`, for the commands that take no root or facts.
fn with_config(s: &Served, args: &[&str], config: &str) -> support::Run {
    let mut all = args.to_vec();
    all.extend(["--config", config]);
    s.p.run(&all)
}

/// A key pair beside the state dir: its directory and key id.
fn keygen(s: &Served) -> (std::path::PathBuf, String) {
    let keys = s.state.parent().unwrap().join("keys");
    let out = converge(&["keygen"])
        .arg(&keys)
        .env_remove("CONVERGE_SIGNING_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_id = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| w.trim_end_matches(':'))
        .find(|w| w.len() == 16 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .expect("keygen names the key id")
        .to_owned();
    (keys, key_id)
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn status_metrics_and_logs_name_the_signed_bundle_and_its_message_and_a_pause_holds_runs() {
    let s = Served::new();
    let (keys, key_id) = keygen(&s);
    // A message that is not one line is refused before anything is written.
    let bad = s.p.run(&[
        "publish",
        s.p.src().to_str().unwrap(),
        s.out.to_str().unwrap(),
        "--message",
        "two\nlines",
    ]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("the message contains the control character '\\n'"),
        "{}",
        bad.stderr
    );
    let published = s.p.run(&[
        "publish",
        s.p.src().to_str().unwrap(),
        s.out.to_str().unwrap(),
        "--key",
        keys.join("converge.key").to_str().unwrap(),
        "--message",
        "deploy 4f2a9c1: app v1",
    ]);
    assert_eq!(published.code, 0, "{}", published.stderr);
    let config = s.config(&format!(
        "trusted_keys = [\"{}\"]\n",
        keys.join("converge.pub").display()
    ));
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    let source = s.record()["source"].clone();
    let id = source["bundle_id"].as_str().unwrap().to_owned();
    assert_eq!(source["message"], "deploy 4f2a9c1: app v1", "{source}");
    assert_eq!(source["signer"], key_id.as_str(), "{source}");
    let created = source["created"].as_str().unwrap().to_owned();
    // The run history names the message too, in JSON and in the table.
    let state = s.state.to_str().unwrap();
    let hist =
        s.p.run(&["history", "--state-dir", state, "--format", "json"]);
    assert_eq!(hist.code, 0, "{}", hist.stderr);
    let runs: serde_json::Value = serde_json::from_str(&hist.stdout).unwrap();
    assert_eq!(runs[0]["message"], "deploy 4f2a9c1: app v1", "{runs}");
    let hist = s.p.run(&["history", "--state-dir", state]);
    let row = hist.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("  finished (root ") && row.ends_with(") \"deploy 4f2a9c1: app v1\""),
        "{}",
        hist.stdout
    );

    let metrics = std::fs::read_to_string(s.state.join("metrics/converge.prom")).unwrap();
    for line in [
        format!("converge_bundle_info{{mode=\"apply\",id=\"{id}\",signer=\"{key_id}\",message=\"deploy 4f2a9c1: app v1\"}} 1"),
        format!(
            "converge_bundle_created_timestamp_seconds{{mode=\"apply\"}} {}",
            humantime::parse_rfc3339(&created)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        ),
        "converge_paused{mode=\"apply\"} 0".to_owned(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in\n{metrics}");
    }

    let status = with_config(&s, &["status", "--format", "json"], &config);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["bundle"]["bundle_id"], id.as_str());
    assert_eq!(json["bundle"]["freshness"], "fresh");
    assert_eq!(json["bundle"]["message"], "deploy 4f2a9c1: app v1");
    assert_eq!(json["last_run"]["exit_code"], 2);
    assert_eq!(json["held"], serde_json::Value::Null);
    assert_eq!(json["paused"], serde_json::Value::Null);
    let human = with_config(&s, &["status"], &config).stdout;
    assert!(
        human.contains(&format!(
            "published: {created} by key {key_id}: \"deploy 4f2a9c1: app v1\"\n"
        )),
        "{human}"
    );
    assert!(
        human.contains(&format!("bundle:    {} (fresh, ", &id[..12])),
        "{human}"
    );
    assert!(human.contains("held:      no\npaused:    no\n"), "{human}");

    // Paused: agent runs change nothing and say so; check and status still work.
    let paused = with_config(
        &s,
        &["pause", "--for", "2h", "--reason", "kernel upgrade"],
        &config,
    );
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    assert!(
        paused.stdout.starts_with("paused until "),
        "{}",
        paused.stdout
    );
    std::fs::write(s.p.at("/etc/app.conf"), "drifted\n").unwrap();
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("apply: paused until ")
            && r.stdout
                .contains("(kernel upgrade): this run changes nothing"),
        "{}",
        r.stdout
    );
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "drifted\n"
    );
    assert_eq!(
        s.record()["exit_code"],
        2,
        "the record stays the last real run's"
    );
    let metrics = std::fs::read_to_string(s.state.join("metrics/converge.prom")).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "converge_paused{mode=\"apply\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics
            .lines()
            .any(|l| l == "converge_paused{mode=\"apply\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("converge_bundle_info{"), "{metrics}");
    // Check names the bundle it checked.
    let check = s.run_config("check", &config);
    assert_eq!(check.code, 2);
    let summary = check.stdout.lines().last().unwrap_or("");
    assert!(
        summary.starts_with("check: 2 resources: 1 in sync, 1 would change, 0 failed")
            && summary.ends_with(&format!("; bundle {} (unchanged)", &id[..12])),
        "{}",
        check.stdout
    );
    let root = s.p.root().display().to_string();
    let facts = s.p.facts_path().display().to_string();
    let check = s.p.run(&[
        "check", "--config", &config, "--root", &root, "--facts", &facts, "--format", "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(
        json["bundle"],
        serde_json::json!({"id": id, "freshness": "unchanged"})
    );
    let json: serde_json::Value =
        serde_json::from_str(&with_config(&s, &["status", "--format", "json"], &config).stdout)
            .unwrap();
    assert_eq!(json["paused"]["reason"], "kernel upgrade");

    // Resumed: the next run converges.
    let resumed = with_config(&s, &["resume"], &config);
    assert!(
        resumed.stdout.starts_with("resumed: agent runs go on"),
        "{}",
        resumed.stdout
    );
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(s.p.at("/etc/app.conf")).unwrap(),
        "version = 1\nhost = web1\n"
    );

    // A pause that has run out ends by itself at the next run.
    std::fs::write(
        s.state.join("paused.json"),
        r#"{"since":"2026-01-01T00:00:00Z","until":"2026-01-01T02:00:00Z","reason":"done"}"#,
    )
    .unwrap();
    std::fs::write(s.p.at("/etc/app.conf"), "drifted\n").unwrap();
    let r = s.run_config("apply", &config);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(!s.state.join("paused.json").exists());
}
