//! The engine, ordering and notify logic against a fake service and package manager: files
//! go to a temp dir, units and packages live in memory, so no root and no container.

use serde_json::{json, Map};

use super::{run, RunOptions};
use crate::plan::{self, Plan, PlanOptions};
use crate::render::Renderer;
use crate::report::{Mode, NotifyAction, NotifyStatus, Report, Status};
use crate::role::{self, SourceTree};
use crate::system::fake::Fake;

/// A temp source tree with one role `t` and a temp root to converge.
struct Scene {
    src: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl Scene {
    fn new(role: &str) -> Scene {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("roles")).unwrap();
        std::fs::create_dir_all(src.path().join("templates")).unwrap();
        std::fs::write(src.path().join("roles/t.toml"), role).unwrap();
        let root = tempfile::tempdir().unwrap();
        for dir in ["etc/app", "etc/systemd/system/web.service.d"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        Scene { src, root }
    }

    fn plan(&self) -> Plan {
        let tree = SourceTree::open(self.src.path()).unwrap();
        let mut set = role::load(&tree, &["t".to_owned()], &Map::new()).unwrap();
        let renderer =
            std::sync::Arc::new(std::sync::Mutex::new(Renderer::new(&tree.templates_dir())));
        let facts = json!({"hostname": "h"});
        plan::build(&tree, &mut set, &facts, &renderer, PlanOptions::default()).unwrap()
    }

    fn run(&self, fake: &Fake, mode: Mode) -> Report {
        run(
            &self.plan(),
            &fake.system(self.root.path()),
            RunOptions::new(mode),
        )
    }

    fn run_journaled(&self, fake: &Fake, mode: Mode) -> Report {
        let journal = self.src.path().join("pending-notify.json");
        let opts = RunOptions {
            journal: Some(&journal),
            ..RunOptions::new(mode)
        };
        run(&self.plan(), &fake.system(self.root.path()), opts)
    }

    fn journal(&self) -> Option<String> {
        std::fs::read_to_string(self.src.path().join("pending-notify.json")).ok()
    }

    fn write(&self, path: &str, text: &str) {
        std::fs::write(self.root.path().join(path), text).unwrap();
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.path().join(path)).unwrap()
    }
}

fn status_of(report: &Report, id: &str) -> Status {
    let o = report.resources.iter().find(|o| o.id.to_string() == id);
    o.unwrap_or_else(|| panic!("no outcome for {id}")).status
}

const WEB: &str = r#"
[[service]]
name = "web"
state = "running"
reload_on_notify = true
"#;

fn conf(path: &str, content: &str) -> String {
    format!("[[file]]\npath = \"{path}\"\ncontent = \"{content}\"\nnotify = [\"service:web\"]\n")
}

#[test]
fn config_changes_reload_once_and_a_unit_change_makes_it_a_restart() {
    let s = Scene::new(&format!(
        "{WEB}{}{}",
        conf("/etc/app/a.conf", "a"),
        conf("/etc/app/b.conf", "b")
    ));
    let fake = Fake::default().unit("web", "active", "enabled");
    let report = s.run(&fake, Mode::Apply);
    assert_eq!(fake.take_log(), ["reload web.service"]);
    let n = &report.notifications[0];
    assert_eq!(
        (n.action, n.status),
        (NotifyAction::Reload, NotifyStatus::Done)
    );
    assert_eq!(n.notified_by.len(), 2);

    // A drop-in changes too: restart beats reload, after one daemon-reload.
    let s = Scene::new(&format!(
        "{WEB}{}{}",
        conf("/etc/app/a.conf", "a"),
        conf(
            "/etc/systemd/system/web.service.d/override.conf",
            "[Service]"
        )
    ));
    let report = s.run(&fake, Mode::Apply);
    assert_eq!(
        fake.take_log(),
        ["daemon-reload", "try-restart web.service"]
    );
    assert_eq!(report.notifications[0].action, NotifyAction::Restart);
    assert_eq!(report.notifications.len(), 1);
}

#[test]
fn a_service_started_in_this_run_is_not_restarted_too() {
    let s = Scene::new(&format!("{WEB}{}", conf("/etc/app/a.conf", "a")));
    let fake = Fake::default().unit("web", "inactive", "enabled");
    let report = s.run(&fake, Mode::Apply);
    assert_eq!(fake.take_log(), ["start web.service"]);
    let n = &report.notifications[0];
    assert_eq!(n.status, NotifyStatus::NotNeeded);
    assert_eq!(
        n.note.as_deref(),
        Some("started in this run, already with the new configuration")
    );
}

#[test]
fn check_changes_nothing_and_shows_what_apply_then_does() {
    let s = Scene::new(&format!("{WEB}{}", conf("/etc/app/a.conf", "a")));
    let fake = Fake::default().unit("web", "active", "enabled");
    let check = s.run_journaled(&fake, Mode::Check);
    assert!(fake.take_log().is_empty());
    assert!(!s.root.path().join("etc/app/a.conf").exists());
    assert_eq!(s.journal(), None);
    assert_eq!(status_of(&check, "file:/etc/app/a.conf"), Status::Pending);
    assert_eq!(check.notifications[0].status, NotifyStatus::Pending);

    let apply = s.run_journaled(&fake, Mode::Apply);
    assert_eq!(fake.take_log(), ["reload web.service"]);
    let changes = |r: &Report| -> Vec<_> { r.resources.iter().map(|o| o.change.clone()).collect() };
    assert_eq!(changes(&check), changes(&apply));
    assert_eq!(s.run(&fake, Mode::Apply).exit_code(), 0);
    assert!(fake.take_log().is_empty());
}

#[test]
fn a_request_survives_a_failed_run_and_is_carried_out_by_the_next() {
    let s = Scene::new(&format!("{WEB}{}", conf("/etc/app/a.conf", "a")));
    let fake = Fake::default()
        .unit("web", "active", "enabled")
        .failing("reload web.service");
    let first = s.run_journaled(&fake, Mode::Apply);
    assert_eq!(first.notifications[0].status, NotifyStatus::Failed);
    assert_eq!(first.notifications[0].error_kind, Some("command_failed"));
    assert_eq!(fake.take_log(), ["reload web.service"]);
    assert!(s.journal().unwrap().contains("service:web"));

    // The file is in sync now, so only the journal knows the reload is still owed.
    fake.heal("reload web.service");
    let second = s.run_journaled(&fake, Mode::Apply);
    assert_eq!(status_of(&second, "file:/etc/app/a.conf"), Status::InSync);
    assert_eq!(fake.take_log(), ["reload web.service"]);
    let n = &second.notifications[0];
    assert_eq!(n.status, NotifyStatus::Done);
    assert_eq!(n.notified_by[0].to_string(), "pending:earlier-run");
    assert_eq!(s.journal(), None);
}

#[test]
fn a_failed_resource_skips_its_dependents_and_the_rest_goes_on() {
    let s = Scene::new(&format!(
        "{WEB}{}{}",
        "[[package]]\nname = \"webd\"\nnotify = [\"service:web\"]\n",
        "[[file]]\npath = \"/etc/other.conf\"\ncontent = \"x\"\n"
    ));
    let fake = Fake::default()
        .unit("web", "active", "enabled")
        .failing("install webd=1.0-1");
    s.write("etc/other.conf", "old");
    let report = s.run(&fake, Mode::Apply);
    assert_eq!(fake.take_log(), ["install webd=1.0-1"]);
    assert_eq!(status_of(&report, "package:webd"), Status::Failed);
    assert_eq!(status_of(&report, "service:web"), Status::Skipped);
    let mut kinds: Vec<_> = report
        .resources
        .iter()
        .map(|o| (o.id.to_string(), o.error_kind))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("file:/etc/other.conf".to_owned(), None),
            ("package:webd".to_owned(), Some("command_failed")),
            ("service:web".to_owned(), Some("skipped")),
        ]
    );
    assert_eq!(status_of(&report, "file:/etc/other.conf"), Status::Changed);
    assert_eq!(report.notifications.len(), 0);
    assert_eq!(
        std::fs::read_to_string(s.root.path().join("etc/other.conf")).unwrap(),
        "x"
    );
}

/// A run killed after its reloads (during its health checks, say) is continued by a run that
/// finds nothing left to reload: the job's record still names the reload, so undoing the
/// job acts on the service again.
#[test]
fn a_continued_run_keeps_the_reloads_of_the_run_it_continues() {
    use crate::history::{self, Recorder, ServiceAction};
    let s = Scene::new(&format!("{WEB}{}", conf("/etc/app/a.conf", "a")));
    let fake = Fake::default().unit("web", "active", "enabled");
    let sys = fake.system(s.root.path());
    let state = tempfile::tempdir().unwrap();
    let killed = Recorder::new(state.path(), 10, "", sys.root());
    let recorded = |recorder| RunOptions {
        recorder: Some(recorder),
        ..RunOptions::new(Mode::Apply)
    };
    run(&s.plan(), &sys, recorded(&killed));
    assert_eq!(fake.take_log(), ["reload web.service"]);
    // As a kill during its health checks leaves it: its reload kept, the run unfinished.
    let record = state.path().join("runs").join(killed.id()).join("run.json");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace("\"finished\"", "\"running\"")).unwrap();

    let next = Recorder::new(state.path(), 10, "", sys.root());
    assert_eq!(next.id(), killed.id());
    run(&s.plan(), &sys, recorded(&next));
    assert!(fake.take_log().is_empty(), "nothing left to reload");
    let reload = ServiceAction {
        unit: "web.service".into(),
        action: NotifyAction::Reload,
    };
    let past = history::load(state.path(), None).unwrap();
    assert_eq!(past.summary.status, history::RunStatus::Finished);
    assert_eq!(past.summary.services, [reload]);
}

/// Apply makes the change observe and diff found, the one check reports: it consumes that
/// change, and does not diff again.
#[test]
fn apply_makes_the_change_that_was_observed() {
    let s = Scene::new(&format!("{WEB}{}", conf("/etc/app/a.conf", "new")));
    s.write("etc/app/a.conf", "old");
    let fake = Fake::default().unit("web", "active", "enabled");
    let sys = fake.system(s.root.path());
    let plan = s.plan();
    let item = plan
        .items
        .iter()
        .find(|i| i.id.to_string() == "file:/etc/app/a.conf")
        .unwrap();
    let checked = item.resource.pending(&sys).unwrap().unwrap().into_change();
    let pending = item.resource.pending(&sys).unwrap().unwrap();
    assert_eq!(pending.change(), &checked);
    let applying = crate::system::Applying::by_the_engine();
    let made = pending.apply(&sys.host(&applying)).unwrap();
    assert_eq!(made, checked);
    assert_eq!(s.read("etc/app/a.conf"), "new");
    assert!(item.resource.pending(&sys).unwrap().is_none(), "in sync");
}
