//! Running programs on the host or in the tree: shell commands with a timeout, as a given
//! user, chrooted into the root when it is not `/`.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Host, System, SystemError};

/// PATH for every program converge runs: the agent's own environment is not the admin's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How much of a failed program's output errors carry.
const TAIL_LINES: usize = 20;
const TAIL_BYTES: usize = 2000;

/// The end of a role's command's output kept while it runs: what reports show is far less,
/// and a command printing without end must not grow the agent with it.
pub(crate) const SHELL_OUTPUT_KEPT: usize = 64 << 10;
/// The end of a host tool's output kept: tools converge parses print kilobytes; the bound
/// only stops a broken one from taking the host's memory.
pub(crate) const TOOL_OUTPUT_KEPT: usize = 16 << 20;

/// The program and arguments of `cmd`, for logs and errors.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            parts.push(format!("'{a}'"));
        } else {
            parts.push(a.into_owned());
        }
    }
    parts.join(" ")
}

/// The last lines of some output, enough to see why a program failed.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    if out.len() > TAIL_BYTES {
        let mut cut = out.len() - TAIL_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("...{}", &out[cut..]);
    }
    out
}

/// Who a command runs as, already resolved in the tree's account databases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// Login name, for USER and LOGNAME.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Home directory, for HOME.
    pub home: String,
}

/// A shell command: `sh -c SCRIPT`, as if run with `chroot ROOT sh -c SCRIPT` under a root.
#[derive(Debug, Clone)]
pub struct Shell<'a> {
    /// What logs and errors call it (the command itself, or a stand-in when it is sensitive).
    pub label: &'a str,
    /// The script given to `sh -c`.
    pub script: &'a str,
    /// Working directory inside the tree (default `/`).
    pub cwd: Option<&'a Path>,
    /// Run as this user instead of root.
    pub user: Option<&'a RunAs>,
    /// Extra environment on top of PATH, HOME, USER and LOGNAME.
    pub env: &'a BTreeMap<String, String>,
    /// Killed (with everything it started in its process group) after this long.
    pub timeout: Duration,
}

/// How a command ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl System {
    /// Runs a guard command (`unless`, `onlyif`). Guards run in check mode too, so they must
    /// not change anything: that is the role author's contract, converge cannot enforce it.
    pub(crate) fn run_guard(&self, shell: &Shell) -> Result<Finished, SystemError> {
        run(self, shell, None)
    }

    /// Where a command run by [`System::run_reading`] sees `dir`.
    pub(crate) fn seen_at(&self, dir: &Path) -> PathBuf {
        if self.is_live() {
            dir.to_path_buf()
        } else {
            PathBuf::from("/tmp")
        }
    }

    /// Runs a check that reads `dir`, a private directory on the machine running converge,
    /// at [`System::seen_at`]. On the live host that is `dir` itself. Under a root the
    /// command runs chrooted in a mount namespace of its own where `dir` is bound over the
    /// tree's `/tmp`, so it sees the files there without a byte written into the tree.
    pub(crate) fn run_reading(&self, shell: &Shell, dir: &Path) -> Result<Finished, SystemError> {
        if self.is_live() {
            return run(self, shell, None);
        }
        // The tree's /tmp found as every managed path is (links inside the tree only, and
        // only root's), and held open: the bind goes onto this very directory.
        let tmp = self.host_path(Path::new("/tmp/.converge-validate"))?;
        let Some((fd, _)) = tmp.at() else {
            return Err(SystemError::io(
                Path::new("/tmp"),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the tree has no /tmp directory to show the command its file in",
                ),
            ));
        };
        let source = CString::new(dir.as_os_str().as_bytes())
            .map_err(|e| SystemError::io(dir, std::io::Error::other(e)))?;
        // `tmp` holds the descriptor open until the command has run.
        let onto = std::os::fd::AsRawFd::as_raw_fd(&fd);
        run(self, shell, Some(Bind { source, onto }))
    }
}

/// A directory of this machine shown to a chrooted command over a directory of the tree.
struct Bind {
    source: CString,
    /// The tree's directory, open.
    onto: std::os::fd::RawFd,
}

impl Host<'_> {
    /// Runs a command that may change the host.
    pub(crate) fn run_shell(&self, shell: &Shell) -> Result<Finished, SystemError> {
        let done = run(self.system(), shell, None);
        // The command may have created, moved or linked anything in the tree.
        self.system().forget_paths();
        self.system().forget_accounts();
        done
    }
}

fn run(sys: &System, shell: &Shell, bind: Option<Bind>) -> Result<Finished, SystemError> {
    let spawn_err = |source: std::io::Error| SystemError::Spawn {
        command: shell.label.to_owned(),
        source,
    };
    let cstring = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|e| spawn_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))
    };
    // Everything the child needs is prepared here: between fork and exec only raw syscalls.
    let chroot = if sys.is_live() {
        None
    } else {
        Some(cstring(sys.root())?)
    };
    let cwd = cstring(shell.cwd.unwrap_or(Path::new("/")))?;
    let ids = shell.user.map(|u| {
        (
            u.uid,
            u.gid,
            u.groups
                .iter()
                .map(|g| *g as nix::libc::gid_t)
                .collect::<Vec<_>>(),
        )
    });

    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(shell.script)
        .env_clear()
        .env("PATH", DEFAULT_PATH);
    match shell.user {
        Some(u) => cmd
            .env("HOME", &u.home)
            .env("USER", &u.name)
            .env("LOGNAME", &u.name),
        None => cmd
            .env("HOME", "/root")
            .env("USER", "root")
            .env("LOGNAME", "root"),
    };
    cmd.envs(shell.env);
    // SAFETY: the closure only makes async-signal-safe syscalls on data prepared before fork.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            use nix::libc;
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            if let Some(bind) = &bind {
                // Into the directory first: unshare moves the working directory into the new
                // namespace, where the bind must land (a mount onto the old namespace's copy
                // is refused).
                check(libc::fchdir(bind.onto))?;
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // Private first: on a host whose mounts are shared, the bind would otherwise
                // show up in the host's own namespace too.
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))?;
                // Onto the open directory by way of the working directory: no path is
                // resolved again, so a link swapped in meanwhile is not followed.
                check(libc::mount(
                    bind.source.as_ptr(),
                    c".".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            if let Some(root) = &chroot {
                check(libc::chroot(root.as_ptr()))?;
            }
            check(libc::chdir(cwd.as_ptr()))?;
            if let Some((uid, gid, groups)) = &ids {
                // Groups first: after setuid there is no permission left to change them.
                check(libc::setgroups(groups.len() as _, groups.as_ptr()))?;
                check(libc::setgid(*gid))?;
                check(libc::setuid(*uid))?;
            }
            Ok(())
        });
    }
    run_keeping(&mut cmd, shell.label, shell.timeout, SHELL_OUTPUT_KEPT)
}

/// Runs `cmd` in a process group of its own, collecting what it prints. Past `timeout` the
/// whole group is killed (a shell's or a tool's children would otherwise live on, holding
/// locks) and the run fails with [`SystemError::Timeout`]. `label` names it in logs and errors.
/// Only the last [`TOOL_OUTPUT_KEPT`] bytes of each stream are kept.
pub(crate) fn run_with_deadline(
    cmd: &mut Command,
    label: &str,
    timeout: Duration,
) -> Result<Finished, SystemError> {
    run_keeping(cmd, label, timeout, TOOL_OUTPUT_KEPT)
}

/// [`run_with_deadline`], keeping the last `kept` bytes of stdout and of stderr.
fn run_keeping(
    cmd: &mut Command,
    label: &str,
    timeout: Duration,
    kept: usize,
) -> Result<Finished, SystemError> {
    let spawn_err = |source: std::io::Error| SystemError::Spawn {
        command: label.to_owned(),
        source,
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    tracing::debug!(command = label, "running");
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(spawn_err)?;
    let (done_tx, done_rx) = mpsc::channel();
    let stdout = collect(child.stdout.take(), kept, done_tx.clone());
    let stderr = collect(child.stderr.take(), kept, done_tx);
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait().map_err(spawn_err)? {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            tracing::warn!(command = label, "timed out and was killed");
            return Err(SystemError::Timeout {
                command: label.to_owned(),
                after: humantime::format_duration(timeout).to_string(),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    // A daemon started in the background may hold the pipes open for ever; do not wait for it.
    for _ in 0..2 {
        if done_rx.recv_timeout(Duration::from_secs(1)).is_err() {
            break;
        }
    }
    let take = |b: Arc<Mutex<Vec<u8>>>| {
        let mut v = b
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let excess = v.len().saturating_sub(kept);
        v.drain(..excess);
        v
    };
    Ok(Finished {
        status,
        stdout: take(stdout),
        stderr: take(stderr),
    })
}

/// Reads a pipe to its end on a thread, into a buffer that can be taken at any time and
/// holds the last `kept` bytes read.
fn collect<R: Read + Send + 'static>(
    pipe: Option<R>,
    kept: usize,
    done: mpsc::Sender<()>,
) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let Some(mut pipe) = pipe else {
        let _ = done.send(());
        return buf;
    };
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Ok(mut v) = out.lock() {
                v.extend_from_slice(&chunk[..n]);
                // Dropping the front only once it is twice the bound keeps the copying linear.
                if v.len() >= 2 * kept {
                    let excess = v.len() - kept;
                    v.drain(..excess);
                }
            }
        }
        let _ = done.send(());
    });
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(text.as_bytes());
        assert!(t.starts_with("line 11\n"), "{t}");
        assert!(t.ends_with("line 30"), "{t}");
        let long = "x".repeat(5000);
        assert_eq!(tail(long.as_bytes()).len(), TAIL_BYTES + 3);
    }

    #[test]
    fn endless_output_is_kept_as_its_last_bytes_only() {
        let sys = System::new(Path::new("/")).unwrap();
        let env = BTreeMap::new();
        let shell = Shell {
            label: "loud",
            script: "head -c 50000000 /dev/zero; echo; echo last line; echo oops >&2",
            cwd: None,
            user: None,
            env: &env,
            timeout: Duration::from_secs(60),
        };
        let done = sys.run_guard(&shell).unwrap();
        assert_eq!(done.stdout.len(), SHELL_OUTPUT_KEPT);
        assert!(done.stdout.ends_with(b"\nlast line\n"));
        assert_eq!(done.stderr, b"oops\n");
    }

    #[test]
    fn commands_are_described_with_quotes_where_needed() {
        let mut c = Command::new("usermod");
        c.args(["-c", "Web App", "app"]);
        assert_eq!(describe(&c), "usermod -c 'Web App' app");
    }

    /// Gone, or a zombie waiting for whoever reaps orphans: either way no longer running.
    fn dead(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(") ").next().unwrap_or("").starts_with('Z')
        })
    }

    #[test]
    fn a_tool_past_its_deadline_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $$ $! > {}; wait", pids.display()));
        let err = run_with_deadline(&mut cmd, "hung-tool", Duration::from_millis(300)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hung-tool: timed out after 300ms and was killed"
        );
        let pids = std::fs::read_to_string(&pids).unwrap();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        assert_eq!(pids.len(), 2);
        // The child is killed with its parent: one SIGKILL to the group reaches both.
        for _ in 0..100 {
            if pids.iter().all(|p| dead(p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(pids.iter().all(|p| dead(p)), "{pids:?}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let sys = System::new(Path::new("/")).unwrap();
        let marker = dir.path().join("late");
        let script = format!("sleep 5; touch {}", marker.display());
        let env = BTreeMap::new();
        let shell = Shell {
            label: "slow",
            script: &script,
            cwd: None,
            user: None,
            env: &env,
            timeout: Duration::from_millis(200),
        };
        let t = Instant::now();
        let err = sys.run_guard(&shell).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            "slow: timed out after 200ms and was killed"
        );
        assert!(!marker.exists());
    }
}
