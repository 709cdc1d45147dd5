//! kill -9 at varying moments of an apply of a few hundred files, and of a rollback: every
//! managed file stays whole (old or new content, never a mix or a truncation), and the next
//! run finishes the job. Bounded by a trial count and a time budget, not by speed.
//! The files live on a tmpfs mounted for the test: kill -9 keeps the page cache, so what a
//! killed process leaves behind is the same as on disk, without waiting for fsyncs of a
//! shared disk. Needs root.
//!
//! Timed kills land where they land; the debug build's crash points
//! (`CONVERGE_CRASH_AT=POINT:N`, see `durable::crash`) land one in each window exactly.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::converge;

const FILES: usize = 200;
const TRIALS: usize = 200;
const BUDGET: Duration = Duration::from_secs(45);

/// Content of file `i` in generation `g`: long enough that a torn write would show.
fn content(g: usize, i: usize) -> String {
    format!("generation {g} file {i}\n").repeat(40)
}

fn role(dir: &Path, g: usize, health: &str) -> String {
    let mut text = String::new();
    for i in 0..FILES {
        text.push_str(&format!(
            "[[file]]\npath = \"{}/f{i:03}\"\ncontent = \"\"\"{}\"\"\"\n\n",
            dir.display(),
            content(g, i)
        ));
    }
    text.push_str(health);
    text
}

/// Which generation each file holds; panics on a file that is none of them whole.
fn generations(dir: &Path, allowed: &[usize]) -> Vec<usize> {
    (0..FILES)
        .map(|i| {
            let path = dir.join(format!("f{i:03}"));
            let got = std::fs::read_to_string(&path).unwrap();
            *allowed
                .iter()
                .find(|g| content(**g, i) == got)
                .unwrap_or_else(|| panic!("{} is torn: {} bytes", path.display(), got.len()))
        })
        .collect()
}

/// A small deterministic generator: the delays vary, the test stays reproducible.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

struct Scene {
    tmp: tempfile::TempDir,
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.tmp.path()).status();
    }
}

impl Scene {
    fn new() -> Scene {
        support::require_root();
        let tmp = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs"])
            .arg(tmp.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mount tmpfs");
        std::fs::create_dir_all(tmp.path().join("src/roles")).unwrap();
        std::fs::create_dir_all(tmp.path().join("live")).unwrap();
        for i in 0..FILES {
            std::fs::write(tmp.path().join(format!("live/f{i:03}")), content(0, i)).unwrap();
        }
        Scene { tmp }
    }

    fn live(&self) -> PathBuf {
        self.tmp.path().join("live")
    }

    fn set_role(&self, g: usize, health: &str) {
        std::fs::write(
            self.tmp.path().join("src/roles/r.toml"),
            role(&self.live(), g, health),
        )
        .unwrap();
    }

    fn apply(&self) -> support::Converge {
        let mut cmd = support::converge(&["apply", "--format", "json", "--role", "r"]);
        cmd.arg("--source")
            .arg(self.tmp.path().join("src"))
            .arg("--state-dir")
            .arg(self.tmp.path().join("state"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn apply_to_end(&self) -> i32 {
        self.apply().status().unwrap().code().unwrap_or(-1)
    }

    /// How long one whole apply of every file takes here, to spread the kills over it.
    fn span(&self) -> u64 {
        let t = Instant::now();
        self.apply_to_end();
        (t.elapsed().as_millis() as u64).max(5)
    }

    /// Runs an apply that kills itself at the `n`th time it reaches `point`.
    fn crash_at(&self, point: &str, n: usize) {
        let status = self
            .apply()
            .env("CONVERGE_CRASH_AT", format!("{point}:{n}"))
            .status()
            .unwrap();
        assert_eq!(status.signal(), Some(9), "{point}:{n} was not reached");
    }

    fn kill_at(&self, after_ms: u64) {
        let mut child = self.apply().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
}

const FAILING: &str = "[[health]]\nname = \"never\"\ncommand = \"false\"\nretries = 0\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_kill_in_each_window_of_an_apply_and_its_rollback_is_undone_by_the_next_run() {
    let s = Scene::new();
    s.set_role(1, FAILING);
    let n = FILES;
    // (point, hit, files at generation 1 when the kill lands)
    let windows = [
        ("recorded", 1, 0),     // first backup durable, its file not swapped
        ("changed", 1, 1),      // first file swapped, the next backup not written
        ("recorded", 100, 99),  // half-way, between a backup and its swap
        ("changed", 100, 100),  // half-way, between a swap and the next backup
        ("changed", n, n),      // every file swapped, the run not yet marked
        ("rolling-back", 1, n), // marked as rolling back, nothing restored
        ("restored", 1, n - 1), // the rollback has put one file back
        ("restored", 100, n - 100),
        ("restored", n, 0), // everything put back, the run not yet marked
    ];
    for (point, hit, changed) in windows {
        s.crash_at(point, hit);
        assert_eq!(at_generation_1(&s), changed, "{point}:{hit}");
        assert_eq!(s.apply_to_end(), 4, "the run after a kill at {point}:{hit}");
        assert_eq!(at_generation_1(&s), 0, "after a kill at {point}:{hit}");
    }
    // Killed again while continuing a killed run, then during that run's rollback.
    s.crash_at("changed", 100);
    s.crash_at("changed", 50);
    assert_eq!(at_generation_1(&s), 150);
    s.crash_at("restored", 120);
    assert_eq!(s.apply_to_end(), 4);
    assert_eq!(at_generation_1(&s), 0);
}

/// How many files hold generation 1 (every file must be generation 0 or 1, whole).
fn at_generation_1(s: &Scene) -> usize {
    let gens = generations(&s.live(), &[0, 1]);
    gens.iter().filter(|g| **g == 1).count()
}

/// The run before the killed one has an id that sorts after it: the clock was stepped back,
/// or, within one second, the pid crossed 9999 → 10000 or wrapped at pid_max. The killed
/// run is still the one the next run continues (it used to pick the newest id, and left the
/// killed run's files at generation 1).
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn the_killed_run_is_undone_even_when_an_earlier_run_sorts_after_it() {
    let s = Scene::new();
    s.set_role(1, FAILING);
    assert_eq!(s.apply_to_end(), 4);
    let runs = s.tmp.path().join("state/runs");
    let earlier: Vec<_> = std::fs::read_dir(&runs).unwrap().flatten().collect();
    assert_eq!(earlier.len(), 1);
    let old_id = earlier[0].file_name().into_string().unwrap();
    let new_id = "99991231T235959Z-1";
    std::fs::rename(runs.join(&old_id), runs.join(new_id)).unwrap();
    let summary = runs.join(new_id).join("run.json");
    let text = std::fs::read_to_string(&summary).unwrap();
    std::fs::write(&summary, text.replace(&old_id, new_id)).unwrap();

    s.crash_at("changed", 50);
    assert_eq!(s.apply_to_end(), 4);
    assert_eq!(at_generation_1(&s), 0);
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn kill_9_during_apply_leaves_every_file_whole_and_the_next_run_completes() {
    let s = Scene::new();
    s.set_role(1, "");
    let span = s.span();
    let mut rng = Lcg(0x5eed);
    let started = Instant::now();
    let mut g = 1;
    let mut trials = 0;
    while trials < TRIALS && started.elapsed() < BUDGET {
        // Every trial has work to do: the desired generation moves on.
        g += 1;
        s.set_role(g, "");
        s.kill_at(rng.below(span));
        generations(&s.live(), &(0..=g).collect::<Vec<_>>());
        trials += 1;
    }
    assert!(trials >= 10, "only {trials} trials ran");
    let code = s.apply_to_end();
    assert!(code == 0 || code == 2, "exit {code}");
    assert!(generations(&s.live(), &[g]).iter().all(|x| *x == g));
    assert_eq!(s.apply_to_end(), 0, "a second run finds nothing to do");
    eprintln!("{trials} kills over a {span} ms apply");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn kill_9_during_a_rollback_leaves_every_file_whole_and_the_next_run_undoes_the_job() {
    let s = Scene::new();
    // Every apply fails its health check and rolls back to generation 0.
    s.set_role(1, FAILING);
    let span = s.span();
    assert!(generations(&s.live(), &[0]).iter().all(|x| *x == 0));
    let mut rng = Lcg(0xdead);
    let started = Instant::now();
    let mut trials = 0;
    while trials < TRIALS / 2 && started.elapsed() < BUDGET {
        // The whole span of apply + rollback, so kills land in both halves.
        s.kill_at(rng.below(span));
        generations(&s.live(), &[0, 1]);
        // The next run undoes what the killed one left: apply again, roll back again.
        assert_eq!(s.apply_to_end(), 4);
        assert!(generations(&s.live(), &[0, 1]).iter().all(|x| *x == 0));
        trials += 1;
    }
    assert!(trials >= 5, "only {trials} trials ran");
    eprintln!("{trials} kills over a {span} ms apply and rollback");
}

/// The history's record of the newest run.
fn newest_run(s: &Scene) -> serde_json::Value {
    let out = converge(&["history", "--format", "json", "--state-dir"])
        .arg(s.tmp.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let newest = runs
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|r| r["seq"].as_u64());
    newest.cloned().unwrap_or_else(|| panic!("no runs: {runs}"))
}

/// The run that continues a killed one records the whole job's changes: the files the killed
/// run changed and the ones it changes itself, once each.
#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_run_that_continues_a_killed_one_counts_the_jobs_changes_in_the_history() {
    let s = Scene::new();
    s.set_role(1, "");
    s.crash_at("changed", 100);
    assert_eq!(s.apply_to_end(), 2);
    assert_eq!(at_generation_1(&s), FILES);
    let run = newest_run(&s);
    assert_eq!(run["status"], "finished", "{run}");
    assert_eq!(run["changed"], FILES, "{run}");
    // Killed once every file was changed: the continuation changes nothing itself.
    s.set_role(2, "");
    s.crash_at("changed", FILES);
    assert_eq!(s.apply_to_end(), 0);
    assert!(generations(&s.live(), &[2]).iter().all(|g| *g == 2));
    let run = newest_run(&s);
    assert_eq!(run["status"], "finished", "{run}");
    assert_eq!(run["changed"], FILES, "{run}");
}
