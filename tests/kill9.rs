//! kill -9 at varying moments of an apply of a few hundred files, and of a rollback: every
//! managed file stays whole (old or new content, never a mix or a truncation), and the next
//! run finishes the job. Bounded by a trial count and a time budget, not by speed.
//! The files live on a tmpfs mounted for the test: kill -9 keeps the page cache, so what a
//! killed process leaves behind is the same as on disk, without waiting for fsyncs of a
//! shared disk. Needs root.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_converge");
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

    fn apply(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["apply", "--format", "json", "--role", "r", "--source"])
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

    fn kill_at(&self, after_ms: u64) {
        let mut child = self.apply().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
    }
}

#[test]
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
fn kill_9_during_a_rollback_leaves_every_file_whole_and_the_next_run_undoes_the_job() {
    let s = Scene::new();
    // Every apply fails its health check and rolls back to generation 0.
    let failing = "[[health]]\nname = \"never\"\ncommand = \"false\"\nretries = 0\n";
    s.set_role(1, failing);
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
