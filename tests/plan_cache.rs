//! The plan cache: a run whose inputs did not change reads the plan an earlier run built,
//! reports exactly what a freshly planned run does, and every input planning reads makes
//! the next run plan again. Runs go through an agent config (source, state dir, roles,
//! vars) so that each writes its record, which says whether the plan was `cached` or
//! `built`.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::{Project, Run};

struct Host {
    p: Project,
}

impl Host {
    /// A tree with two roles (one included), a template with a partial, a bundle file, and
    /// nodes.toml giving the host the role `web`.
    fn new() -> Host {
        let p = Project::new();
        p.file("roles/base.toml", "[vars]\nmotto = \"steady\"\n\n[[file]]\npath = \"/etc/motd\"\ntemplate = \"motd.hbs\"\n")
            .file(
                "roles/web.toml",
                "include = [\"base\"]\n\n[vars]\nport = 80\n\n[[directory]]\npath = \"/etc/app\"\n\n[[file]]\npath = \"/etc/app/app.conf\"\ntemplate = \"app.hbs\"\nmode = \"0644\"\n\n[[file]]\npath = \"/etc/app/static.txt\"\nsource = \"static.txt\"\n\n[[file]]\npath = \"/etc/app/own.conf\"\ntemplate = \"app.hbs\"\n[file.vars]\nport = 8080\n",
            )
            .file("roles/extra.toml", "[[file]]\npath = \"/etc/extra\"\ncontent = \"extra\\n\"\n")
            .file("templates/motd.hbs", "{{vars.motto}} {{facts.hostname}}\n")
            .file("templates/app.hbs", "{{> head}}\nport = {{vars.port}}\ncpus = {{facts.cpus}}\n")
            .file("templates/partials/head.hbs", "# managed by converge\n")
            .file("files/static.txt", "static one\n")
            .file("nodes.toml", "[[node]]\nhostname = \"web*\"\nroles = [\"web\"]\n");
        let host = Host { p };
        host.config("");
        host
    }

    fn dir(&self) -> PathBuf {
        self.p.root().parent().unwrap().to_path_buf()
    }

    fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// Writes the agent config with `more` (roles, [vars]) after source and state dir.
    fn config(&self, more: &str) {
        let text = format!(
            "source = {:?}\nstate_dir = {:?}\n{more}",
            self.p.src().display().to_string(),
            self.state().display().to_string()
        );
        std::fs::write(self.dir().join("agent.toml"), text).unwrap();
    }

    /// `converge MODE` as the agent config says, with `extra` arguments.
    fn run(&self, mode: &str, extra: &[&str]) -> Run {
        let config = self.dir().join("agent.toml").display().to_string();
        let root = self.p.root().display().to_string();
        let facts = self.p.facts_path().display().to_string();
        let mut args = vec![
            mode, "--config", &config, "--root", &root, "--facts", &facts,
        ];
        args.extend(extra);
        let run = self.p.run(&args);
        assert!(run.code != 1, "{mode}: {}", run.stderr);
        run
    }

    /// Where the last run of `mode` got its plan (`cached`, `built`, or none).
    fn plan(&self, mode: &str) -> Option<String> {
        let file = match mode {
            "check" => "last-check.json",
            _ => "last-run.json",
        };
        let text = std::fs::read_to_string(self.state().join(file)).unwrap();
        let record: Value = serde_json::from_str(&text).unwrap();
        record["plan"].as_str().map(str::to_owned)
    }

    /// `MODE` with `extra`, its exit code and where its plan came from.
    fn outcome(&self, mode: &str, extra: &[&str]) -> (i32, Option<String>) {
        let run = self.run(mode, extra);
        (run.code, self.plan(mode))
    }

    fn entries(&self) -> Vec<PathBuf> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(self.state().join("plan-cache"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        entries
    }
}

fn built() -> Option<String> {
    Some("built".into())
}

fn cached() -> Option<String> {
    Some("cached".into())
}

/// The JSON report without what differs from run to run (its start and duration).
fn report(run: &Run) -> Value {
    let mut report: Value = serde_json::from_str(&run.stdout).unwrap();
    let object = report.as_object_mut().unwrap();
    object.remove("started");
    object.remove("duration_ms");
    report
}

#[test]
fn a_cached_plan_reports_exactly_what_a_fresh_plan_does_and_writes_the_same_files() {
    let h = Host::new();
    let json = ["--format", "json"];
    let first = h.run("check", &json);
    assert_eq!((first.code, h.plan("check")), (2, built()));
    let second = h.run("check", &json);
    assert_eq!((second.code, h.plan("check")), (2, cached()));
    let fresh = h.run("check", &["--format", "json", "--no-plan-cache"]);
    assert_eq!((fresh.code, h.plan("check")), (2, None));
    assert_eq!(report(&second), report(&first));
    assert_eq!(report(&fresh), report(&first));
    assert_eq!(report(&first)["summary"]["changed"], 5, "{}", first.stdout);
    assert_eq!(h.entries().len(), 1);

    // Every file of the cached plan gets its content written, templated ones included.
    assert_eq!(h.outcome("apply", &[]), (2, cached()));
    let read = |p: &str| std::fs::read_to_string(h.p.at(p)).unwrap();
    assert_eq!(read("/etc/motd"), "steady web1\n");
    assert_eq!(
        read("/etc/app/app.conf"),
        "# managed by converge\nport = 80\ncpus = 4\n"
    );
    assert_eq!(
        read("/etc/app/own.conf"),
        "# managed by converge\nport = 8080\ncpus = 4\n"
    );
    assert_eq!(read("/etc/app/static.txt"), "static one\n");
    assert_eq!(h.outcome("apply", &[]), (0, cached()));
    assert_eq!(h.outcome("check", &[]), (0, cached()));
}

const DIFF: &str = "~ update file:/etc/app/app.conf  (role web)
    --- /etc/app/app.conf (live)
    +++ /etc/app/app.conf (desired)
    @@ -1,3 +1,3 @@
     # managed by converge
    -port = 81
    +port = 80
     cpus = 4
";

#[test]
fn a_live_file_edited_behind_a_cached_plan_is_seen_by_check_and_apply() {
    let h = Host::new();
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    assert_eq!(h.outcome("check", &[]), (0, cached()));
    h.p.root_file(
        "/etc/app/app.conf",
        "# managed by converge\nport = 81\ncpus = 4\n",
    );
    let check = h.run("check", &[]);
    assert_eq!((check.code, h.plan("check")), (2, cached()));
    assert_eq!(
        check.stdout,
        format!("{DIFF}check: 5 resources: 4 in sync, 1 would change, 0 failed\n")
    );
    let fresh = h.run("check", &["--no-plan-cache"]);
    assert_eq!(fresh.stdout, check.stdout);
    let apply = h.run("apply", &[]);
    assert_eq!((apply.code, h.plan("apply")), (2, cached()));
    assert_eq!(
        apply.stdout,
        format!("{DIFF}apply: 5 resources: 4 in sync, 1 changed, 0 failed\n")
    );
    assert_eq!(
        std::fs::read_to_string(h.p.at("/etc/app/app.conf")).unwrap(),
        "# managed by converge\nport = 80\ncpus = 4\n"
    );
    assert_eq!(h.outcome("check", &[]), (0, cached()));
}

/// After `edit`, check plans again and shows the change at `path`, apply makes it, and the
/// run after reads the new plan from the cache.
fn seen(h: &Host, what: &str, extra: &[&str], path: &str, want: &str) {
    let check = h.run("check", extra);
    assert_eq!(
        (check.code, h.plan("check")),
        (2, built()),
        "{what}: {}",
        check.stdout
    );
    let apply = h.run("apply", extra);
    assert_eq!(
        (apply.code, h.plan("apply")),
        (2, cached()),
        "{what}: {}",
        apply.stdout
    );
    assert_eq!(
        std::fs::read_to_string(h.p.at(path)).unwrap(),
        want,
        "{what}"
    );
    assert_eq!(h.outcome("check", extra), (0, cached()), "{what}");
}

#[test]
fn every_input_planning_reads_makes_the_next_run_plan_again() {
    let h = Host::new();
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    assert_eq!(h.outcome("apply", &[]), (0, cached()));
    let app = "/etc/app/app.conf";

    h.p.file(
        "roles/web.toml",
        &std::fs::read_to_string(h.p.src().join("roles/web.toml"))
            .unwrap()
            .replace("port = 80", "port = 81"),
    );
    seen(
        &h,
        "a role",
        &[],
        app,
        "# managed by converge\nport = 81\ncpus = 4\n",
    );

    h.p.file(
        "roles/base.toml",
        &std::fs::read_to_string(h.p.src().join("roles/base.toml"))
            .unwrap()
            .replace("steady", "ready"),
    );
    seen(&h, "an included role", &[], "/etc/motd", "ready web1\n");

    h.p.file(
        "templates/app.hbs",
        "{{> head}}\nport={{vars.port}}\ncpus = {{facts.cpus}}\n",
    );
    seen(
        &h,
        "a template",
        &[],
        app,
        "# managed by converge\nport=81\ncpus = 4\n",
    );

    h.p.file("templates/partials/head.hbs", "# Managed by converge\n");
    seen(
        &h,
        "a partial",
        &[],
        app,
        "# Managed by converge\nport=81\ncpus = 4\n",
    );

    // Same size: only the content tells.
    h.p.file("files/static.txt", "static two\n");
    seen(
        &h,
        "a bundle file",
        &[],
        "/etc/app/static.txt",
        "static two\n",
    );

    h.p.file(
        "nodes.toml",
        "[[node]]\nhostname = \"web*\"\nroles = [\"web\", \"extra\"]\n",
    );
    seen(&h, "nodes.toml", &[], "/etc/extra", "extra\n");

    h.p.file(
        "roles/extra.toml",
        "[[file]]\npath = \"/etc/extra\"\ncontent = \"extra two\\n\"\n",
    );
    h.config("roles = [\"extra\"]\n");
    seen(
        &h,
        "the config's roles (and the role)",
        &[],
        "/etc/extra",
        "extra two\n",
    );

    h.config("");
    assert_eq!(h.outcome("check", &[]), (0, built()));
    h.config("[vars]\nport = 90\n");
    seen(
        &h,
        "the config's vars",
        &[],
        app,
        "# managed by converge\nport=90\ncpus = 4\n"
            .replace("managed", "Managed")
            .as_str(),
    );

    seen(
        &h,
        "--var",
        &["--var", "port=91"],
        app,
        "# Managed by converge\nport=91\ncpus = 4\n",
    );

    let facts = std::fs::read_to_string(h.p.facts_path()).unwrap();
    std::fs::write(
        h.p.facts_path(),
        facts.replace("\"cpus\": 4", "\"cpus\": 6"),
    )
    .unwrap();
    seen(
        &h,
        "a fact",
        &["--var", "port=91"],
        app,
        "# Managed by converge\nport=91\ncpus = 6\n",
    );

    h.p.file(
        "roles/extra.toml",
        "[[file]]\npath = \"/etc/extra\"\ncontent = \"extra three\\n\"\n",
    );
    seen(
        &h,
        "--role",
        &["--var", "port=91", "--role", "extra"],
        "/etc/extra",
        "extra three\n",
    );
}

#[test]
fn a_truncated_or_corrupt_entry_is_planned_again_with_the_same_outcome() {
    let h = Host::new();
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    let entries = h.entries();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let sound = std::fs::read(entry).unwrap();

    std::fs::write(entry, &sound[..sound.len() / 2]).unwrap();
    assert_eq!(h.outcome("check", &[]), (0, built()));
    assert_eq!(std::fs::read(entry).unwrap(), sound, "rewritten whole");
    assert_eq!(h.outcome("check", &[]), (0, cached()));

    let mut corrupt = sound.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    std::fs::write(entry, &corrupt).unwrap();
    h.p.root_file("/etc/motd", "drifted\n");
    assert_eq!(h.outcome("check", &[]), (2, built()));
    assert_eq!(h.outcome("apply", &[]), (2, cached()));

    std::fs::write(entry, b"").unwrap();
    assert_eq!(h.outcome("apply", &[]), (0, built()));
    assert_eq!(h.entries(), entries);
}

#[test]
fn without_a_state_dir_every_run_plans_and_nothing_is_made() {
    let h = Host::new();
    let src = h.p.src().display().to_string();
    let missing = h.dir().join("no-state");
    let config = h.dir().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "source = {src:?}\nstate_dir = {:?}\n",
            missing.display().to_string()
        ),
    )
    .unwrap();
    // A checkout named on the command line with the agent config: no lock, no record.
    let args = |mode: &'static str| -> Vec<String> {
        let mut a: Vec<String> = [mode, "--source", &src, "--config"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend([
            config.display().to_string(),
            "--root".into(),
            h.p.root().display().to_string(),
        ]);
        a.extend([
            "--facts".into(),
            h.p.facts_path().display().to_string(),
            "--role".into(),
            "web".into(),
        ]);
        a
    };
    let run = |mode| {
        let a = args(mode);
        h.p.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(run("check").code, 2);
    assert_eq!(run("apply").code, 2);
    assert_eq!(run("check").code, 0);
    assert!(!missing.exists());
}

#[test]
fn a_published_bundle_is_keyed_by_its_id() {
    let h = Host::new();
    let out = h.dir().join("bundle");
    let publish = || {
        let src = h.p.src().display().to_string();
        let facts = h.p.facts_path().display().to_string();
        let r =
            h.p.run(&["publish", &src, out.to_str().unwrap(), "--facts", &facts]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    };
    publish();
    let text = format!(
        "source = {:?}\nstate_dir = {:?}\n",
        out.display().to_string(),
        h.state().display().to_string()
    );
    std::fs::write(h.dir().join("agent.toml"), text).unwrap();
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    assert_eq!(h.outcome("apply", &[]), (0, cached()));
    assert_eq!(h.outcome("check", &[]), (0, cached()));

    h.p.file(
        "templates/motd.hbs",
        "{{vars.motto}} on {{facts.hostname}}\n",
    );
    publish();
    // A check reads a new bundle from a scratch copy, which its plan points into; the apply
    // that takes the bundle on plans from where the bundle is kept.
    assert_eq!(h.outcome("check", &[]), (2, built()));
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    assert_eq!(
        std::fs::read_to_string(h.p.at("/etc/motd")).unwrap(),
        "steady on web1\n"
    );
    assert_eq!(h.outcome("apply", &[]), (0, cached()));
    assert_eq!(h.outcome("check", &[]), (0, cached()));
}

/// Tests keep their runs' state in their own dir: on a host where /var/lib/converge exists,
/// a check and an apply through the test fixture leave it untouched and use the test's
/// state dir for their plan cache.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_test_fixture_keeps_its_runs_out_of_the_machines_state_dir() {
    let p = Project::new();
    p.file(
        "roles/r.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"hello\\n\"\n",
    );
    let upper = p.watch_var_lib();
    std::fs::create_dir(p.state_dir()).unwrap();
    let check = p.check(&["r"]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    let apply = p.apply(&["r"]);
    assert_eq!(apply.code, 2, "{}", apply.stderr);
    let written: Vec<_> = std::fs::read_dir(upper.join("converge"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        written.is_empty(),
        "written into /var/lib/converge: {written:?}"
    );
    let entries = std::fs::read_dir(p.state_dir().join("plan-cache")).unwrap();
    assert_eq!(entries.count(), 1);
}

#[test]
fn an_entry_copied_over_another_key_is_not_used_for_it() {
    let h = Host::new();
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    let web = h.entries();
    assert_eq!(web.len(), 1);
    assert_eq!(h.outcome("check", &["--role", "extra"]), (2, built()));
    let extra: Vec<PathBuf> = h.entries().into_iter().filter(|e| *e != web[0]).collect();
    assert_eq!(extra.len(), 1);
    // The web plan, in sync, stands where the extra role's plan was.
    std::fs::copy(&web[0], &extra[0]).unwrap();
    assert_eq!(h.outcome("check", &["--role", "extra"]), (2, built()));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_state_dir_or_cache_someone_else_could_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let h = Host::new();
    assert_eq!(h.outcome("apply", &[]), (2, built()));
    let config = h.dir().join("agent.toml").display().to_string();
    let root = h.p.root().display().to_string();
    let facts = h.p.facts_path().display().to_string();
    let refused = |why: &str, path: PathBuf| {
        let before = h.p.tree();
        for mode in ["check", "apply"] {
            let run = h.p.run(&[
                mode, "--config", &config, "--root", &root, "--facts", &facts,
            ]);
            assert_eq!(run.code, 1, "{mode}: {run:?}");
            assert_eq!(
                run.stderr,
                format!(
                    "converge: error: state dir {}: {}: {why}; converge uses a state dir only when it and everything in it belong to uid 0 and are not writable by group or others (fix the owner or mode, or remove it)\n",
                    h.state().display(),
                    path.display()
                ),
                "{mode}"
            );
        }
        assert_eq!(h.p.tree(), before);
    };
    let entry = h.entries().remove(0);
    std::os::unix::fs::chown(&entry, Some(65534), None).unwrap();
    refused("belongs to uid 65534", entry.clone());
    std::os::unix::fs::chown(&entry, Some(0), None).unwrap();
    let cache = h.state().join("plan-cache");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o733)).unwrap();
    refused("is writable by its group (mode 0733)", cache.clone());
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).unwrap();
    let runs = h.state().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o702)).unwrap();
    refused("is writable by others (mode 0702)", runs.clone());
    std::fs::set_permissions(&runs, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(h.outcome("check", &[]), (0, cached()));
}
