//! The run history: recording, ordering, continuing and pruning runs.

use super::*;
use backup::Blobs;
use std::fs::OpenOptions;
use std::io::Write;

/// sha256 of `secret`.
const SECRET_SHA: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

/// The summaries of the runs in the history, oldest first.
fn summaries(state_dir: &Path) -> Vec<RunSummary> {
    list(state_dir)
        .into_iter()
        .map(|l| l.summary.unwrap())
        .collect()
}

fn prior(n: usize) -> Prior {
    Prior::Sysctl {
        resource: format!("sysctl:k{n}"),
        key: format!("k{n}"),
        value: n.to_string(),
    }
}

#[test]
fn runs_that_change_nothing_leave_no_trace_and_only_keep_runs_are_kept() {
    let state = tempfile::tempdir().unwrap();
    let idle = Recorder::new(state.path(), 3, "b0", Path::new("/"));
    idle.update(|s| s.status = RunStatus::Finished).unwrap();
    assert!(summaries(state.path()).is_empty());
    for n in 0..5 {
        let mut r = Recorder::new(state.path(), 3, "b1", Path::new("/"));
        // Distinct ids within one second and one pid.
        r.set_id(format!("2026-run-{n}"));
        r.record(&prior(n)).unwrap();
        r.blobs().put(SECRET_SHA, &mut &b"secret"[..]).unwrap();
        r.update(|s| {
            s.changed = 1;
            s.status = RunStatus::Finished;
        })
        .unwrap();
    }
    let runs = summaries(state.path());
    let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["2026-run-2", "2026-run-3", "2026-run-4"]);
    let past = load(state.path(), None).unwrap();
    assert_eq!(past.summary.id, "2026-run-4");
    assert_eq!(past.priors, vec![prior(4)]);
    assert_eq!(past.blobs.get(SECRET_SHA, 6).unwrap(), b"secret");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(past.blobs.dir.join(SECRET_SHA))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        load(state.path(), Some("nope")),
        Err(HistoryError::NoSuchRun(_))
    ));
}

#[test]
fn a_run_after_an_interrupted_one_continues_it() {
    let state = tempfile::tempdir().unwrap();
    let killed = Recorder::new(state.path(), 3, "b1", Path::new("/"));
    killed.record(&prior(1)).unwrap();
    drop(killed);
    let other_root = Recorder::new(state.path(), 3, "b2", Path::new("/srv/tree"));
    assert!(!other_root.has_changes());
    let next = Recorder::new(state.path(), 3, "b2", Path::new("/"));
    assert!(next.has_changes());
    next.record(&prior(2)).unwrap();
    next.update(|s| s.status = RunStatus::Finished).unwrap();
    let runs = summaries(state.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].bundle, "b2");
    assert_eq!(
        load(state.path(), None).unwrap().priors,
        vec![prior(1), prior(2)]
    );
    let fresh = Recorder::new(state.path(), 3, "b3", Path::new("/"));
    assert!(!fresh.has_changes());
}

/// Two runs in the same second: when the pid crossed 9999 → 10000 (or wrapped at
/// pid_max, or the clock stepped back), the later run's id sorts first.
#[test]
fn the_interrupted_run_is_continued_whatever_its_id_sorts_like() {
    let state = tempfile::tempdir().unwrap();
    let mut done = Recorder::new(state.path(), 10, "b1", Path::new("/"));
    done.set_id("20261202T010000Z-9999");
    done.record(&prior(1)).unwrap();
    done.update(|s| s.status = RunStatus::RolledBack).unwrap();
    let mut killed = Recorder::new(state.path(), 10, "b1", Path::new("/"));
    killed.set_id("20261202T010000Z-10000");
    killed.record(&prior(2)).unwrap();
    drop(killed);
    assert_eq!(
        load(state.path(), None).unwrap().summary.id,
        "20261202T010000Z-10000",
        "the newest run is the one that started last"
    );
    let next = Recorder::new(state.path(), 10, "b1", Path::new("/"));
    assert!(next.has_changes());
    assert_eq!(next.id(), "20261202T010000Z-10000");
    next.record(&prior(3)).unwrap();
    assert_eq!(next.priors().unwrap(), vec![prior(2), prior(3)]);
    let ids: Vec<_> = summaries(state.path()).into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["20261202T010000Z-9999", "20261202T010000Z-10000"]);
}

#[test]
fn pruning_never_drops_an_unfinished_run() {
    let state = tempfile::tempdir().unwrap();
    let mut killed = Recorder::new(state.path(), 2, "b1", Path::new("/"));
    killed.set_id("2026-run-0");
    killed.record(&prior(0)).unwrap();
    drop(killed);
    // Runs on another root come and go meanwhile; the killed run's backups stay.
    for n in 1..4 {
        let mut r = Recorder::new(state.path(), 2, "b1", Path::new("/srv/tree"));
        r.set_id(format!("2026-run-{n}"));
        r.record(&prior(n)).unwrap();
        r.update(|s| s.status = RunStatus::Finished).unwrap();
    }
    let ids: Vec<_> = summaries(state.path()).into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["2026-run-0", "2026-run-2", "2026-run-3"]);
    let next = Recorder::new(state.path(), 2, "b1", Path::new("/"));
    assert_eq!(next.id(), "2026-run-0");
    assert_eq!(next.priors().unwrap(), vec![prior(0)]);
}

#[test]
fn a_torn_last_line_is_a_change_that_never_happened() {
    let state = tempfile::tempdir().unwrap();
    let r = Recorder::new(state.path(), 3, "", Path::new("/"));
    r.record(&prior(1)).unwrap();
    let path = r.dir().join(BACKUP_FILE);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"kind\":\"sysc").unwrap();
    assert_eq!(read_priors(&r.dir()).unwrap(), vec![prior(1)]);
    // A run continuing it appends on a line of its own.
    let next = Recorder::new(state.path(), 3, "", Path::new("/"));
    next.record(&prior(2)).unwrap();
    assert_eq!(read_priors(&r.dir()).unwrap(), vec![prior(1), prior(2)]);
}

#[test]
fn runs_started_in_one_second_by_one_pid_get_directories_of_their_own() {
    let state = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|n| {
            let r = Recorder::new(state.path(), 10, "", Path::new("/"));
            r.record(&prior(n)).unwrap();
            r.update(|s| s.status = RunStatus::Finished).unwrap();
            r.id()
        })
        .collect();
    let listed: Vec<_> = summaries(state.path()).into_iter().map(|r| r.id).collect();
    assert_eq!(listed, ids);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(load(state.path(), Some(id)).unwrap().priors, vec![prior(n)]);
    }
}

fn left(change: usize) -> Left {
    Left {
        change,
        state: LeftState::Missing,
        sensitive: false,
    }
}

#[test]
fn what_each_change_left_is_found_by_its_line_across_a_continued_run() {
    let state = tempfile::tempdir().unwrap();
    let killed = Recorder::new(state.path(), 3, "", Path::new("/"));
    assert_eq!(killed.record(&prior(0)).unwrap(), 0);
    killed.left(&left(0)).unwrap();
    assert_eq!(killed.record(&prior(1)).unwrap(), 1);
    // Killed while noting what change 1 left.
    let path = killed.dir().join(left::LEFT_FILE);
    drop(killed);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"change\":1,\"sta").unwrap();

    let next = Recorder::new(state.path(), 3, "", Path::new("/"));
    assert_eq!(next.record(&prior(2)).unwrap(), 2);
    next.left(&left(2)).unwrap();
    let found = next.lefts().unwrap();
    assert_eq!(found.keys().collect::<Vec<_>>(), [&0, &2]);
    assert_eq!(load(state.path(), None).unwrap().left, found);
}
