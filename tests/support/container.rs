//! A real systemd booted with systemd-nspawn on an overlay of the cached
//! rootfs, following the recipe in shared TESTING.md.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cli::{converge, BIN};
use super::overlay::Overlay;
use super::rootfs::debian_rootfs;
use super::stale::CGROUP_PREFIX;
use super::tools::{copy_file, output_text, require_root, require_tool, write_tree};

/// How long boot may take before we give up; a healthy boot takes ~1 s.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a clean poweroff may take before processes are killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(10);

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A booted systemd container; powered off and cleaned up on Drop.
pub struct Container {
    name: String,
    nspawn: Child,
    leader: i32,
    cgroups: Vec<PathBuf>,
    share: PathBuf,
    console: PathBuf,
    boot_time: Duration,
    overlay: Overlay,
    bin: std::cell::OnceCell<String>,
}

impl Container {
    /// Boots a container and waits until systemd reports running/degraded.
    ///
    /// `name` is a hint; a pid/counter suffix keeps parallel tests apart.
    pub fn boot(name: &str) -> Container {
        require_root();
        let nspawn_bin = require_tool("systemd-nspawn");
        require_tool("nsenter");
        let setsid = require_tool("setsid");
        let bash = require_tool("bash");
        let name = unique_name(name);
        let overlay = Overlay::mount(debian_rootfs());
        let share = overlay.scratch().join("share");
        fs::create_dir(&share).expect("create share dir");
        let console = overlay.scratch().join("console.log");
        // debootstrap copied the build host's /etc/hostname, and systemd
        // prefers it over the name nspawn sets, so tests could not tell
        // containers apart.
        fs::write(overlay.merged().join("etc/hostname"), format!("{name}\n"))
            .expect("write /etc/hostname");

        // Our own cgroup in every hierarchy: nspawn with --keep-unit needs
        // one it may own, and it lets Drop find and kill every process.
        let cgroups: Vec<PathBuf> = cgroup_roots()
            .into_iter()
            .map(|root| root.join(format!("{CGROUP_PREFIX}{name}")))
            .collect();
        for cg in &cgroups {
            fs::create_dir(cg)
                .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", cg.display()));
        }
        let procs: Vec<String> = cgroups
            .iter()
            .map(|c| c.join("cgroup.procs").display().to_string())
            .collect();

        let started = Instant::now();
        let log = File::create(&console).expect("create console.log");
        // setsid: nspawn must not share the test's session/terminal, or it
        // gets the test harness's signals and job control.
        let nspawn = Command::new(setsid)
            .arg("-w")
            .arg(bash)
            .arg("-c")
            .arg(r#"for f in $CONVERGE_CG_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@""#)
            .arg("bash")
            .arg(nspawn_bin)
            .args(["--boot", "-q", "-D"])
            .arg(overlay.merged())
            .args([
                "--register=no",
                "--keep-unit",
                "--private-network",
                "-M",
                &name,
            ])
            .arg(format!("--bind={}:/mnt/share", share.display()))
            .env("CONVERGE_CG_PROCS", procs.join(" "))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup console fd"))
            .stderr(log)
            .spawn()
            .expect("spawn systemd-nspawn");

        let mut ct = Container {
            name,
            nspawn,
            leader: 0,
            cgroups,
            share,
            console,
            boot_time: Duration::ZERO,
            overlay,
            bin: Default::default(),
        };
        ct.wait_for_boot(started);
        ct.boot_time = started.elapsed();
        ct
    }

    fn wait_for_boot(&mut self, started: Instant) {
        let mut last_state = String::from("(no leader yet)");
        loop {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!(
                    "container {} exited during boot ({status}); console.log:\n{}",
                    self.name,
                    self.console_log()
                );
            }
            if started.elapsed() > BOOT_TIMEOUT {
                panic!(
                    "container {} not running after {:?} (last state: {last_state}); console.log:\n{}",
                    self.name,
                    BOOT_TIMEOUT,
                    self.console_log()
                );
            }
            if self.leader == 0 {
                if let Some(pid) = find_leader(self.nspawn.id() as i32) {
                    self.leader = pid;
                }
            }
            if self.leader != 0 {
                let out = self.exec(&["systemctl", "is-system-running"]);
                last_state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match last_state.as_str() {
                    "running" => return,
                    "degraded" => {
                        let failed = self.exec(&["systemctl", "--failed", "--no-legend"]);
                        eprintln!(
                            "support: container {} is degraded; failed units:\n{}",
                            self.name,
                            String::from_utf8_lossy(&failed.stdout)
                        );
                        return;
                    }
                    _ => {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A Command that runs `cmd` inside the container (all namespaces of
    /// its PID 1); add env, stdin etc. before spawning.
    pub fn command(&self, cmd: &[&str]) -> Command {
        assert!(!cmd.is_empty(), "Container needs a command");
        let mut c = Command::new("nsenter");
        c.arg("-t").arg(self.leader.to_string()).arg("-a").args(cmd);
        // The host environment would otherwise leak into the container.
        c.env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Runs `cmd` inside the container and collects its output.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.command(cmd)
            .output()
            .unwrap_or_else(|e| panic!("failed to spawn nsenter {cmd:?}: {e}"))
    }

    /// Like `exec`, but panics with the output unless it succeeds; returns stdout.
    pub fn exec_ok(&self, cmd: &[&str]) -> String {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "in container {}: {cmd:?} failed\n{}",
            self.name,
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The binary under test inside the container, copied into the share on first use.
    pub fn bin(&self) -> &str {
        self.bin.get_or_init(|| self.share(Path::new(BIN)))
    }

    /// Writes `files` (`roles/web.toml`, `templates/x.hbs`, ...) as the source tree
    /// `/mnt/share/src` that [`Container::converge`] reads, replacing the one there.
    pub fn write_source(&self, files: &[(&str, &str)]) {
        write_tree(&self.share.join("src"), files);
    }

    /// Runs `converge MODE --color never --source /mnt/share/src --role ROLE EXTRA...` inside
    /// the container with the binary under test: converge on the source tree the test wrote
    /// under `share_dir()/src` (see [`Container::write_source`]).
    pub fn converge(&self, mode: &str, role: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            mode,
            "--color",
            "never",
            "--source",
            "/mnt/share/src",
            "--role",
            role,
        ];
        args.extend_from_slice(extra);
        self.run_converge(&args)
    }

    /// Runs `converge ARGS` inside the container with the binary under test.
    pub fn run_converge(&self, args: &[&str]) -> Output {
        let mut cmd = vec![self.bin()];
        cmd.extend_from_slice(args);
        self.exec(&cmd)
    }

    /// Runs a shell script inside the container.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Serves `dir` (a path inside the container, e.g. under /mnt/share) over HTTP on
    /// 127.0.0.1:`port` inside the container, with the container's own nginx run as a
    /// transient unit: a --private-network container cannot reach the host's loopback.
    /// Returns once it answers; `http://127.0.0.1:PORT/` is then its URL inside.
    pub fn serve_http(&self, dir: &str, port: u16) -> String {
        let conf = format!(
            "daemon off;\nmaster_process off;\npid /run/test-http.pid;\nerror_log stderr;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path /tmp;\n  proxy_temp_path /tmp;\n\
             fastcgi_temp_path /tmp;\n  uwsgi_temp_path /tmp;\n  scgi_temp_path /tmp;\n\
             default_type application/octet-stream;\n\
             server {{ listen 127.0.0.1:{port}; root {dir}; }}\n}}\n"
        );
        fs::write(self.share.join("test-http.conf"), conf).expect("write test-http.conf");
        self.exec_ok(&[
            "systemd-run",
            "--unit=test-http",
            "--quiet",
            "nginx",
            "-c",
            "/mnt/share/test-http.conf",
        ]);
        let url = format!("http://127.0.0.1:{port}/");
        for _ in 0..200 {
            // Any answer will do (a directory without an index is a 403).
            if self
                .exec(&["curl", "-sS", "-o", "/dev/null", &url])
                .status
                .success()
            {
                return url;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "nginx in container {} does not answer on {url}:\n{}",
            self.name,
            String::from_utf8_lossy(&self.exec(&["journalctl", "-u", "test-http"]).stdout)
        );
    }

    /// Host PID of the container's systemd (PID 1 inside).
    pub fn leader(&self) -> i32 {
        self.leader
    }

    /// Host directory bind-mounted at /mnt/share inside the container.
    pub fn share_dir(&self) -> &Path {
        &self.share
    }

    /// Copies a host file into the share dir; returns its path inside.
    pub fn share(&self, src: &Path) -> String {
        let file = src.file_name().expect("share() needs a file path");
        copy_file(src, &self.share.join(file));
        format!("/mnt/share/{}", file.to_string_lossy())
    }

    /// Publishes the source tree `src` with the converge under test into `<share>/out`,
    /// which the container reads as `file:///mnt/share/out`.
    pub fn publish(&self, src: &Path) {
        let out = converge(&[OsStr::new("publish"), src.as_os_str()])
            .arg(self.share.join("out"))
            .output()
            .expect("run converge publish");
        assert!(
            out.status.success(),
            "publish failed\n{}",
            output_text(&out)
        );
    }

    /// The container's root (overlay merged dir) as seen from the host.
    pub fn root(&self) -> &Path {
        self.overlay.merged()
    }

    /// Unique machine name (also the hostname inside).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// D-Bus system bus address for host-side clients talking to this systemd.
    pub fn dbus_address(&self) -> String {
        format!(
            "unix:path=/proc/{}/root/run/dbus/system_bus_socket",
            self.leader
        )
    }

    /// What nspawn and the booting system printed so far.
    pub fn console_log(&self) -> String {
        fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// How long boot took until running/degraded.
    pub fn boot_time(&self) -> Duration {
        self.boot_time
    }

    /// The cgroup directories created for this container (removed on Drop).
    pub fn cgroup_dirs(&self) -> &[PathBuf] {
        &self.cgroups
    }

    fn wait_nspawn(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    fn kill_all(&mut self) {
        let _ = kill(Pid::from_raw(self.nspawn.id() as i32), Signal::SIGKILL);
        for cg in &self.cgroups {
            for pid in cgroup_pids(cg) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let started = Instant::now();
        let mut stopped = matches!(self.nspawn.try_wait(), Ok(Some(_)));
        if !stopped && self.leader != 0 {
            let _ = self.exec(&["systemctl", "poweroff", "--no-block"]);
            stopped = self.wait_nspawn(POWEROFF_TIMEOUT);
        }
        if !stopped {
            eprintln!(
                "support: container {} did not power off in {:?}; killing it",
                self.name, POWEROFF_TIMEOUT
            );
            self.kill_all();
            let _ = self.wait_nspawn(Duration::from_secs(5));
        }
        let left = self.overlay.unmount();
        let mut problems = Vec::new();
        if !left.is_empty() {
            problems.push(format!("mounts left: {left:?}"));
        }
        for cg in &self.cgroups {
            if let Err(e) = remove_cgroup(cg) {
                problems.push(format!("cgroup {}: {e}", cg.display()));
            }
        }
        eprintln!(
            "support: container {} torn down in {:.2} s",
            self.name,
            started.elapsed().as_secs_f64()
        );
        if !problems.is_empty() {
            eprintln!(
                "support: teardown of {} incomplete: {}",
                self.name,
                problems.join("; ")
            );
        }
    }
}

fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let clean: String = hint
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    let clean = if clean.is_empty() { "ct".into() } else { clean };
    // Machine names must be valid hostnames (<= 64 chars), unique across
    // the parallel test processes on this host.
    format!(
        "{clean}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Hybrid hosts need a cgroup in the unified and the named systemd
/// hierarchy; a pure v2 host has just the root.
pub(crate) fn cgroup_roots() -> Vec<PathBuf> {
    let hybrid: Vec<PathBuf> = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    if !hybrid.is_empty() {
        return hybrid;
    }
    vec![PathBuf::from("/sys/fs/cgroup")]
}

pub(crate) fn cgroup_pids(cg: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for dir in subdirs_deepest_first(cg) {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids
}

fn subdirs_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
        }
        out.push(dir);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Removes a cgroup tree; retries because exiting processes linger briefly.
pub(crate) fn remove_cgroup(cg: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if !cg.exists() {
            return Ok(());
        }
        let mut last_err = None;
        for dir in subdirs_deepest_first(cg) {
            if let Err(e) = fs::remove_dir(&dir) {
                last_err = Some(e);
            }
        }
        if !cg.exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} (pids still inside: {:?})",
                last_err.map(|e| e.to_string()).unwrap_or_default(),
                cgroup_pids(cg)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds the container's systemd: a descendant of the nspawn process tree
/// whose comm is "systemd" (nspawn forks before exec'ing init).
fn find_leader(root_pid: i32) -> Option<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut comms: HashMap<i32, String> = HashMap::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // comm may contain spaces and parens; it ends at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
        comms.insert(pid, comm);
    }
    // Breadth-first so we get the outermost systemd, not one of its children.
    let mut queue = std::collections::VecDeque::from([root_pid]);
    while let Some(pid) = queue.pop_front() {
        if pid != root_pid && comms.get(&pid).map(String::as_str) == Some("systemd") {
            return Some(pid);
        }
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids);
        }
    }
    None
}
