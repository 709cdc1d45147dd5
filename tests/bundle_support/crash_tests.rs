//! kill -9 at arbitrary moments of a sync must leave `current` on a complete, verified
//! bundle. The test binary re-runs itself as a child that syncs in a loop; the parent
//! SIGKILLs it after a varying delay and checks the state dir each time.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::bundle_support::fixture::{fast_opts, tree, Scenario};
use super::bundle_support::{Fault, TestServer};
use converge::bundle::{publish, sync, Freshness, Manifest, Source};

const URL_ENV: &str = "CONVERGE_CRASH_TEST_URL";
const STATE_ENV: &str = "CONVERGE_CRASH_TEST_STATE";
const FILES: usize = 40;
const KILLS: u64 = 16;
/// How long the last round may take to complete its sync: a bound on a hung child, not a
/// measure of speed.
const LAST_ROUND_LIMIT: Duration = Duration::from_secs(120);

/// Not a test on its own: the child process of `kill_9_during_sync_never_breaks_current`.
#[test]
#[ignore = "helper process, run by kill_9_during_sync_never_breaks_current"]
fn crash_child_sync_loop() {
    let (Ok(url), Ok(state)) = (std::env::var(URL_ENV), std::env::var(STATE_ENV)) else {
        return;
    };
    let source = Source::parse(&url).unwrap();
    loop {
        let _ = sync(&source, Path::new(&state), &fast_opts(vec![]));
        // Polls of an unchanged bundle would otherwise hit the server's request bound.
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_during_sync_never_breaks_current() {
    let s = Scenario::new();
    let server = TestServer::serve(&s.out());
    // Slow objects stretch each sync over the whole fetch → materialise → switch path.
    server.fault("/objects/*", Fault::Delay(Duration::from_millis(2)));
    let mut published = BTreeMap::new();
    let mut completed = 0;
    for round in 0..KILLS {
        for i in 0..FILES {
            s.write(
                &format!("files/f{i:02}"),
                &format!("round {round} file {i}\n"),
            );
        }
        let p = publish(&s.src(), &s.out(), None).unwrap();
        published.insert(p.id.clone(), tree(&s.src()));

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_tests::crash_child_sync_loop"])
            .args(["--ignored", "--test-threads=1"])
            .env(URL_ENV, server.url())
            .env(STATE_ENV, s.state())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Spread kills over process start-up, fetching, and the final switch. The last
        // round waits until its sync has switched `current` (however slow the machine),
        // so the "some sync completed" guard below cannot flake; its kill then lands in
        // the child's next poll.
        let start = Instant::now();
        if round + 1 == KILLS {
            while current_id(&s.state()).as_deref() != Some(p.id.as_str()) {
                assert!(
                    start.elapsed() < LAST_ROUND_LIMIT,
                    "the child did not complete a sync in {LAST_ROUND_LIMIT:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        } else {
            let delay = Duration::from_millis(10 + (round * 53) % 400);
            while start.elapsed() < delay {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        if let Ok(target) = fs::read_link(s.state().join("current")) {
            let dir = s.state().join(&target);
            let id = target.file_name().unwrap().to_str().unwrap().to_string();
            assert_complete(&dir, &id);
            assert_eq!(tree(&dir), published[&id], "round {round}");
            if id == p.id {
                completed += 1;
            }
        }
    }
    // Guards against a vacuous pass (child never got anywhere) and against kills that
    // always land after the sync finished.
    eprintln!("{completed} of {KILLS} syncs completed before the kill");
    assert!(completed > 0, "no sync ever completed before its kill");
    assert!(
        completed < KILLS,
        "every kill landed after the sync had finished"
    );
    // After all that, a normal sync converges to the last publish.
    server.clear_faults();
    let o = sync(
        &Source::parse(&server.url()).unwrap(),
        &s.state(),
        &fast_opts(vec![]),
    )
    .unwrap();
    assert!(
        matches!(o.freshness, Freshness::Fresh { .. } | Freshness::Unchanged),
        "{o:?}"
    );
    assert_eq!(tree(&o.bundle_dir), tree(&s.src()));
}

/// The bundle id `current` points at, if any.
fn current_id(state: &Path) -> Option<String> {
    let target = fs::read_link(state.join("current")).ok()?;
    Some(target.file_name()?.to_str()?.to_owned())
}

/// Every file listed in the bundle's manifest is present with the right hash, and no more.
fn assert_complete(dir: &Path, id: &str) {
    let bytes = fs::read(dir.join(".manifest.json")).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), id);
    let m = Manifest::parse(&bytes, "state").unwrap();
    let files = tree(dir);
    assert_eq!(files.len(), m.files.len());
    for (path, entry) in &m.files {
        assert_eq!(
            hex::encode(Sha256::digest(&files[path])),
            entry.sha256,
            "{path}"
        );
    }
}
