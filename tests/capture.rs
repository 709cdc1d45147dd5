//! The whole story with real parts: two Debian hosts (overlays of the cached debootstrap
//! rootfs, each in a network namespace of its own), "old" tuned by hand the way people do,
//! "new" built from the written-down config. compare names exactly the tunings; capture
//! writes a role that is in sync on old and that, applied on new (chrooted, in its
//! namespace, with no systemd running), leaves no difference.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::kernel::Kernel;
use support::{build_deb, copy_file, output_text, AptRepo, Chroot, NetNs, BIN};

/// One host: a writable Debian tree, its own network namespace, /proc mounted inside so the
/// converge binary can run in it as it would on the machine itself, and a kernel of its own
/// (stand-ins for its modules and devices, mounted for each command it runs).
struct Host {
    ch: Chroot,
    ns: NetNs,
    kernel: tempfile::TempDir,
}

/// Puts the host's stand-in /sys/kernel/mm (`$W/mm`) over the kernel's, under `$R`.
const MM: &str = "mkdir -p $R/sys/kernel/mm && mount --bind $W/mm $R/sys/kernel/mm || fail mm\n";

/// Where a host's kernel stand-ins are seen from inside its tree.
const KERNEL_INSIDE: &str = "/run/converge-test-kernel";

impl Host {
    fn new(name: &str, hostname: &str, machine_id: &str, kernel: &Kernel) -> Host {
        let ch = Chroot::new();
        let root = ch.path();
        std::fs::write(root.join("etc/hostname"), format!("{hostname}\n")).unwrap();
        std::fs::write(root.join("etc/machine-id"), format!("{machine_id}\n")).unwrap();
        let bin = root.join("usr/local/bin/converge");
        copy_file(Path::new(BIN), &bin);
        let status = std::process::Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc"))
            .status()
            .unwrap();
        assert!(status.success(), "mount proc in {}", root.display());
        let dir = tempfile::tempdir().unwrap();
        support::kernel::write(dir.path(), kernel, KERNEL_INSIDE);
        // The host's own /sys/kernel/mm, as a stock kernel shows it.
        for (file, text) in [
            ("transparent_hugepage/enabled", "always [madvise] never\n"),
            (
                "transparent_hugepage/defrag",
                "always defer defer+madvise [madvise] never\n",
            ),
            ("ksm/run", "0\n"),
            ("ksm/pages_to_scan", "100\n"),
        ] {
            let path = dir.path().join("mm").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Host {
            ch,
            ns: NetNs::new(name),
            kernel: dir,
        }
    }

    /// Runs `cmd` in this host's namespace after `setup` mounted its kernel's stand-ins,
    /// `$R` being `root` and `$V` where they are seen from there.
    fn with_kernel(&self, setup: &str, root: &str, inside: &str, cmd: &[&str]) -> Output {
        let w = format!("W={}", self.kernel.path().display());
        let (r, v) = (format!("R={root}"), format!("V={inside}"));
        let script = format!("{setup}exec \"$@\"\n");
        let mut args = vec!["env", &w, &r, &v, "sh", "-c", &script, "sh"];
        args.extend_from_slice(cmd);
        self.ns.run(&args)
    }

    /// The modprobe calls made on this host.
    fn modprobe_calls(&self) -> String {
        std::fs::read_to_string(self.kernel.path().join("calls")).unwrap()
    }

    fn root(&self) -> &Path {
        self.ch.path()
    }

    /// Installs this machine's nft (the same Debian release as the tree) with the libraries
    /// the tree lacks, as an admin would install the nftables package: both hosts have it.
    fn install_nft(&self) {
        let nft = support::require_tool("nft");
        let ldd = std::process::Command::new("ldd")
            .arg(&nft)
            .output()
            .unwrap();
        assert!(ldd.status.success(), "{}", output_text(&ldd));
        let libs: Vec<PathBuf> = String::from_utf8_lossy(&ldd.stdout)
            .lines()
            .filter_map(|l| l.split("=>").nth(1))
            .filter_map(|l| l.split_whitespace().next())
            .map(PathBuf::from)
            .collect();
        for file in std::iter::once(nft.clone()).chain(libs) {
            let inside = self.root().join(file.strip_prefix("/").unwrap());
            if !inside.exists() {
                std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
                copy_file(&std::fs::canonicalize(&file).unwrap(), &inside);
            }
        }
    }

    /// A command run on this host from outside its tree (the machine's own tools).
    fn outside(&self, script: &str) -> String {
        let out = self.ns.sh(script);
        assert!(out.status.success(), "{script}\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A shell script run in the tree (chroot) inside this host's namespace, with its
    /// kernel's /proc/modules and `modprobe`.
    fn sh(&self, script: &str) -> Output {
        let root = self.root().display().to_string();
        let setup = format!(
            "{}mount --bind $W/sbin $R/usr/local/sbin || fail sbin\n{MM}",
            support::kernel::PROC_MODULES
        );
        self.with_kernel(
            &setup,
            &root,
            KERNEL_INSIDE,
            &[
                "env",
                "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LC_ALL=C",
                "DEBIAN_FRONTEND=noninteractive",
                "chroot",
                &root,
                "sh",
                "-c",
                script,
            ],
        )
    }

    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.status.success(), "{script}\n{}", output_text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `converge snapshot --root TREE` from outside the tree, in this host's namespace,
    /// where the running kernel is its kernel.
    fn snapshot(&self, out: &Path, extra: &[&str]) {
        let root = self.root().display().to_string();
        let mut args = vec![
            BIN,
            "snapshot",
            "--root",
            &root,
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let setup = format!(
            "{}{}{MM}",
            support::kernel::PROC_MODULES,
            support::kernel::MODULE_FILES
        );
        let w = self.kernel.path().display().to_string();
        let run = self.with_kernel(&setup, "", &w, &args);
        assert!(run.status.success(), "{}", output_text(&run));
    }
}

fn converge(args: &[&str]) -> Output {
    support::converge(args).output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn differences(old: &Path, new: &Path) -> (i32, BTreeSet<String>, Value) {
    let out = converge(&[
        "compare",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("compare --format json: {e}\n{}", output_text(&out)));
    let ids = doc["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["kind"].as_str().unwrap(),
                d["id"].as_str().unwrap()
            )
        })
        .collect();
    (code(&out), ids, doc)
}

/// A table as `crontab` installs it: the header it writes names a temp file and the time.
fn crontab(installed: &str, table: &str) -> String {
    format!(
        "# DO NOT EDIT THIS FILE - edit the master and reinstall.\n# ({installed})\n# (Cron version -- $Id: crontab.c,v 2.13 1994/01/17 03:20:37 vixie Exp $)\n{table}"
    )
}

/// What a lived-in host gathers by itself in the places the snapshot looks: histories,
/// caches, bytecode, logs, backups, cloud-init's network file; plus what lies outside the
/// snapshot's scope (DHCP leases, the random seed, timer stamps, instance data, web data).
fn live_a_life(host: &Host, seed: &str) {
    host.sh_ok(&format!(
        "set -e
         echo 'ls -la {seed}' > /root/.bash_history
         echo '{seed}' > /root/.lesshst
         mkdir -p /root/.cache/pip/http && echo {seed} > /root/.cache/pip/http/blob
         mkdir -p /opt/tool/logs /opt/tool/lib/__pycache__
         echo 'started {seed}' > /opt/tool/logs/run.log
         echo '{seed}' > /opt/tool/lib/__pycache__/m.cpython-311.pyc
         echo 'ran {seed}' > /opt/tool/tool.log.1
         echo 'old {seed}' > /opt/tool/tool.conf.bak
         mkdir -p /srv/www && echo '<p>{seed}</p>' > /srv/www/index.html
         mkdir -p /etc/network/interfaces.d
         printf 'auto eth0\\niface eth0 inet dhcp # {seed}\\n' > /etc/network/interfaces.d/50-cloud-init
         mkdir -p /var/lib/dhcp /var/lib/systemd/timers /var/lib/cloud/instance
         echo 'lease {{ fixed-address 10.0.0.{seed}; }}' > /var/lib/dhcp/dhclient.eth0.leases
         echo {seed} > /var/lib/systemd/random-seed
         touch /var/lib/systemd/timers/stamp-apt-daily.timer
         echo 'i-{seed}' > /var/lib/cloud/instance/instance-id"
    ));
}

const APP_UNIT: &str = "[Unit]\nDescription=app\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n";

/// A nightly job set up by hand: its service and its timer.
const NIGHTLY_SERVICE: &str = "[Unit]\nDescription=nightly cleanup\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/find /tmp -mtime +7 -delete\n";
const NIGHTLY_TIMER: &str = "[Unit]\nDescription=nightly cleanup\n\n[Timer]\nOnCalendar=*-*-* 03:15:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";

/// The aliases both hosts' kernels know: those of each host's NIC driver and wireguard's.
const MODULE_ALIASES: &str = "alias pci:v00008086d000015B8sv*sd*bc*sc*i* e1000e\n\
     alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net\n\
     alias net-pf-16-proto-16-family-wireguard wireguard\n";

/// Old's kernel: an Intel NIC whose driver is loaded, though not bound (another holds it).
const OLD_KERNEL: Kernel = Kernel {
    loaded: "dm_mod 184320 0 - Live 0x0000000000000000\n\
             e1000e 356352 0 - Live 0x0000000000000000\n",
    builtin: "",
    available: "wireguard\ne1000e\nvirtio_net\ndm_mod\n",
    aliases: MODULE_ALIASES,
    devices: &[(
        "pci0000:00/0000:00:1f.6",
        "pci:v00008086d000015B8sv000017AAsd00002251bc02sc00i00",
    )],
};

/// New's kernel: a virtio NIC, its driver loaded.
const NEW_KERNEL: Kernel = Kernel {
    loaded: "dm_mod 184320 0 - Live 0x0000000000000000\n\
             virtio_net 73728 0 - Live 0x0000000000000000\n",
    devices: &[(
        "pci0000:00/0000:00:03.0",
        "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
    )],
    ..OLD_KERNEL
};

/// The same kernel on both hosts, for tests about something else.
const SAME_KERNEL: Kernel = Kernel {
    loaded: "dm_mod 184320 0 - Live 0x0000000000000000\n",
    devices: &[],
    ..OLD_KERNEL
};

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn old_tuned_by_hand_is_captured_and_new_then_matches_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = AptRepo::build(
        &tmp.path().join("caprepo"),
        &[("cfgtest", "1.0-1"), ("cfgtest", "2.0-1")],
    );
    let old = Host::new(
        "old",
        "old-db1",
        "0123456789abcdef0123456789abcdef",
        &OLD_KERNEL,
    );
    let new = Host::new(
        "new",
        "new-db1",
        "fedcba9876543210fedcba9876543210",
        &NEW_KERNEL,
    );

    // The written-down config, on both: the local archive and the current cfgtest.
    for host in [&old, &new] {
        repo.add_to(&host.ch);
        host.sh_ok("apt-get install -y -q cfgtest >/dev/null");
    }
    // Both have nft, and cron's spool with the same www-data table installed by `crontab`
    // on different days (so with different headers).
    for (host, day) in [
        (&old, "Mon Dec  7 10:00:00 2026"),
        (&new, "Tue Dec  8 11:30:00 2026"),
    ] {
        host.install_nft();
        let spool = host.root().join("var/spool/cron/crontabs");
        std::fs::create_dir_all(&spool).unwrap();
        std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o1730)).unwrap();
        let table = crontab(
            &format!("/tmp/crontab.{}/crontab installed on {day}", &day[..3]),
            "*/5 * * * * /usr/bin/true\n",
        );
        std::fs::write(spool.join("www-data"), table).unwrap();
        std::fs::set_permissions(
            spool.join("www-data"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    // Each host lives its own life: identity, logs, timestamps, network config, caches.
    old.sh_ok("echo 'nameserver 10.0.0.2' > /etc/resolv.conf && echo boot >> /var/log/old.log && ldconfig");
    new.sh_ok("echo 'nameserver 10.9.9.9' > /etc/resolv.conf && touch -d '2001-01-01' /etc/motd /etc/issue && mkdir -p /var/log/x");
    live_a_life(&old, "17");
    live_a_life(&new, "42");

    // Old, tuned by hand over the years.
    old.sh_ok(
        "set -e
         sysctl -q -w net.core.somaxconn=8192 net.ipv4.tcp_fin_timeout=15
         printf 'net.core.somaxconn = 8192\\nnet.ipv4.tcp_fin_timeout = 15\\n' > /etc/sysctl.d/90-tuning.conf
         sed -i 's/worker_connections 768/worker_connections 4096/' /etc/nginx/nginx.conf
         groupadd -g 1500 app
         useradd -u 1500 -g app -G adm -s /bin/sh -c 'App service' app
         mkdir /etc/app
         echo 'port = 8080' > /etc/app/app.conf
         echo 'password = hunter2' > /etc/app/secret.conf
         chgrp app /etc/app/secret.conf && chmod 0640 /etc/app/secret.conf
         systemctl disable -q nginx.service
         apt-get install -y -q --allow-downgrades cfgtest=1.0-1 >/dev/null
         apt-mark hold cfgtest >/dev/null",
    );
    std::fs::write(old.root().join("etc/systemd/system/app.service"), APP_UNIT).unwrap();
    old.sh_ok("systemctl enable -q app.service");
    // Vendor packages no archive offers, installed with dpkg -i: one whose .deb is gone,
    // one whose .deb is still in apt's cache (held, as admins do with such packages).
    let vendor = |name| support::Deb {
        name,
        version: "1.0-1",
        depends: None,
        files: &[],
    };
    build_deb(&old.root().join("tmp"), &vendor("vendortool"));
    build_deb(
        &old.root().join("var/cache/apt/archives"),
        &vendor("cachedtool"),
    );
    old.sh_ok(
        "set -e
         dpkg -i /tmp/vendortool_1.0-1_all.deb /var/cache/apt/archives/cachedtool_1.0-1_all.deb >/dev/null
         rm /tmp/vendortool_1.0-1_all.deb
         apt-mark hold cachedtool >/dev/null",
    );
    let units = old.root().join("etc/systemd/system");
    std::fs::write(units.join("nightly.service"), NIGHTLY_SERVICE).unwrap();
    std::fs::write(units.join("nightly.timer"), NIGHTLY_TIMER).unwrap();
    old.sh_ok("systemctl enable -q nightly.timer");
    // ...and in the places beyond /etc: a root crontab (written as `crontab` writes it: the
    // tree has no cron), a script it runs, an application's config under /opt, a key
    // allowed to log in as root, a library path (which takes effect through ldconfig), and
    // a firewall rule added during an incident.
    old.sh_ok(
        "set -e
         printf '#!/bin/sh\\ntar czf /var/backups/etc.tgz /etc\\n' > /usr/local/bin/backup.sh
         chmod 0755 /usr/local/bin/backup.sh
         mkdir -p /opt/app/etc
         echo 'workers = 8' > /opt/app/etc/app.conf
         echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld admin@old' > /root/.ssh/authorized_keys
         chmod 0600 /root/.ssh/authorized_keys
         echo /opt/app/lib > /etc/ld.so.conf.d/app.conf
         ldconfig",
    );
    let root_table = old.root().join("var/spool/cron/crontabs/root");
    std::fs::write(
        &root_table,
        crontab(
            "/tmp/crontab.Xa1b2C/crontab installed on Mon Dec  7 10:05:00 2026",
            "0 3 * * * /usr/local/bin/backup.sh\n",
        ),
    )
    .unwrap();
    std::fs::set_permissions(&root_table, std::fs::Permissions::from_mode(0o600)).unwrap();
    old.outside(
        "nft add table inet filter && nft add chain inet filter input '{ type filter hook input priority 0; policy accept; }' && nft add rule inet filter input ip saddr 192.0.2.66 drop",
    );

    // A module loaded by hand. Each host's own NIC driver is loaded on it alone too, and is
    // hardware, not tuning.
    old.sh_ok("modprobe wireguard");
    // Transparent hugepages off by hand, as a database's install guide says...
    old.sh_ok("echo never > /sys/kernel/mm/transparent_hugepage/enabled");
    // ...which the kernel then shows as its choice list.
    std::fs::write(
        old.kernel.path().join("mm/transparent_hugepage/enabled"),
        "always madvise [never]\n",
    )
    .unwrap();

    let old_json = tmp.path().join("old.json");
    let new_json = tmp.path().join("new.json");
    // Old's private files travel only when asked for: capture then copies secret.conf.
    old.snapshot(&old_json, &["--include-private"]);
    new.snapshot(&new_json, &["--include-private"]);

    // compare names exactly the tunings, and nothing else.
    let (status, ids, doc) = differences(&old_json, &new_json);
    let expected: BTreeSet<String> = [
        "sysctl net.core.somaxconn",
        "sysctl net.ipv4.tcp_fin_timeout",
        "package cfgtest",
        "package cachedtool",
        "package vendortool",
        "unit app.service",
        "unit nginx.service",
        "unit nightly.service",
        "unit nightly.timer",
        "user app",
        "group adm",
        "group app",
        "file /etc/app",
        "file /etc/app/app.conf",
        "file /etc/app/secret.conf",
        "file /etc/nginx/nginx.conf",
        "file /etc/sysctl.d/90-tuning.conf",
        "file /etc/systemd/system/app.service",
        "file /etc/systemd/system/nightly.service",
        "file /etc/systemd/system/nightly.timer",
        "file /etc/ld.so.conf.d/app.conf",
        "file /opt/app",
        "file /opt/app/etc",
        "file /opt/app/etc/app.conf",
        "file /root/.ssh/authorized_keys",
        "file /usr/local/bin/backup.sh",
        "file /var/spool/cron/crontabs/root",
        "nftables inet/filter",
        "kernel_module wireguard",
        "sysfs kernel/mm/transparent_hugepage/enabled",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(ids, expected, "{doc:#}");
    assert_eq!(status, 2);
    let human = converge(&[
        "compare",
        old_json.to_str().unwrap(),
        new_json.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("  ~ net.core.somaxconn\n      value: 8192 → 4096\n"),
        "{text}"
    );
    assert!(
        text.contains("      -\tworker_connections 4096;\n"),
        "{text}"
    );
    assert!(text.contains("version: 1.0-1 → 2.0-1"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "a private file's content was shown:\n{text}"
    );

    // capture: a role that validates and is in sync on old.
    let src = tmp.path().join("src");
    let role = captured(&old_json, &new_json, &src, "tuned");
    assert!(
        role.contains("\"net.core.somaxconn\" = { value = 8192, persist = false }"),
        "{role}"
    );
    assert!(
        role.contains("name = \"cfgtest\"\nversion = \"1.0-1\""),
        "{role}"
    );
    assert!(role.contains("sensitive = true"), "{role}");
    // The vendor package with a cached .deb is shipped and installed from it; the other is
    // said in the header, never declared.
    assert!(
        role.contains("name = \"cachedtool\"\nsource = \"tuned/var/cache/apt/archives/cachedtool_1.0-1_all.deb\""),
        "{role}"
    );
    assert_eq!(
        std::fs::read(src.join("files/tuned/var/cache/apt/archives/cachedtool_1.0-1_all.deb"))
            .unwrap(),
        std::fs::read(
            old.root()
                .join("var/cache/apt/archives/cachedtool_1.0-1_all.deb")
        )
        .unwrap()
    );
    assert!(
        role.contains("#   - package vendortool 1.0-1: no source configured on old-db1 offers this version (a package file installed by hand, or a version its archive dropped), and old-db1 keeps no copy in apt's cache: not captured"),
        "{role}"
    );
    assert!(!role.contains("name = \"vendortool\""), "{role}");
    // The nightly job is one declaration, its units' text as old has it.
    assert!(
        role.contains(
            "[[timer]]\nname = \"nightly\"\nenabled = true\n\
             timer = { source = \"tuned/etc/systemd/system/nightly.timer\" }\n\
             service = { source = \"tuned/etc/systemd/system/nightly.service\" }\n"
        ),
        "{role}"
    );
    assert!(
        !role.contains("path = \"/etc/systemd/system/nightly"),
        "{role}"
    );
    assert!(!role.contains("unit nightly"), "{role}");
    assert_eq!(
        std::fs::read_to_string(src.join("files/tuned/etc/systemd/system/nightly.timer")).unwrap(),
        NIGHTLY_TIMER
    );
    // The effects: ldconfig for the library path, nginx reloaded for its config, the rule.
    assert!(
        role.contains("[[exec]]\nname = \"ldconfig\"\ncommand = \"ldconfig\""),
        "{role}"
    );
    assert!(
        role.contains("after = [\"file:/etc/ld.so.conf.d/app.conf\"]"),
        "{role}"
    );
    assert!(role.contains("notify = [\"service:nginx\"]"), "{role}");
    assert!(role.contains("reload_on_notify = true"), "{role}");
    assert!(
        role.contains("[[nftables]]\nfamily = \"inet\"\ntable = \"filter\""),
        "{role}"
    );
    assert!(
        role.contains("[[kernel_module]]\nname = \"wireguard\"\n"),
        "{role}"
    );
    assert!(
        role.contains(
            "\"kernel/mm/transparent_hugepage/enabled\" = { value = \"never\", persist = false }"
        ),
        "{role}"
    );
    assert!(
        role.contains("kernel module wireguard: captured; [[kernel_module]] also keeps it loaded at boot with /etc/modules-load.d/converge-wireguard.conf, which a second compare shows"),
        "{role}"
    );
    assert!(
        !role.contains("e1000e") && !role.contains("virtio_net"),
        "{role}"
    );
    assert!(
        role.contains("/etc/nftables.d/converge-inet-filter.nft, which a second compare shows"),
        "{role}"
    );
    assert_eq!(
        std::fs::read_to_string(src.join("files/tuned/usr/local/bin/backup.sh")).unwrap(),
        "#!/bin/sh\ntar czf /var/backups/etc.tgz /etc\n"
    );
    assert_eq!(
        std::fs::read_to_string(src.join("files/tuned/etc/app/app.conf")).unwrap(),
        "port = 8080\n"
    );
    let secret = src.join("files/tuned/etc/app/secret.conf");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = converge(&[
        "validate",
        "--source",
        src.to_str().unwrap(),
        "--role",
        "tuned",
    ]);
    assert_eq!(code(&out), 0, "{}\n{role}", output_text(&out));

    for host in [&old, &new] {
        // Outside the snapshot's scope: the source itself is no tuning of either host.
        let dest = host.root().join("var/lib/capture-src");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dest)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let run = "converge --color never {mode} --source /var/lib/capture-src --role tuned --state-dir /var/lib/converge-test";
    // In sync on old, but for the file that keeps the rule for boot (the header says so).
    let out = old.sh(&format!("{} --format json", run.replace("{mode}", "check")));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("check --format json: {e}\n{}", output_text(&out)));
    let changing: BTreeSet<String> = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "in_sync")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        changing,
        BTreeSet::from([
            "directory:/etc/nftables.d".to_owned(),
            "file:/etc/nftables.d/converge-inet-filter.nft".to_owned(),
            "file:/etc/modules-load.d/converge-wireguard.conf".to_owned(),
        ]),
        "check on old:\n{}\n{role}",
        output_text(&out)
    );

    // Applied on new, chrooted in its namespace with no systemd running: no difference left.
    let out = new.sh(&run.replace("{mode}", "apply"));
    assert_eq!(code(&out), 2, "{}\n{role}", output_text(&out));
    let out = new.sh(&run.replace("{mode}", "apply"));
    assert_eq!(
        code(&out),
        0,
        "second apply is not a no-op:\n{}",
        output_text(&out)
    );
    let after = tmp.path().join("new-after.json");
    new.snapshot(&after, &["--include-private"]);
    let (status, ids, doc) = differences(&old_json, &after);
    // Only what the header names: the package it could not capture, and what the role adds
    // for boot.
    assert_eq!(
        ids,
        BTreeSet::from([
            "package vendortool".to_owned(),
            "file /etc/nftables.d".to_owned(),
            "file /etc/nftables.d/converge-inet-filter.nft".to_owned(),
            "file /etc/modules-load.d/converge-wireguard.conf".to_owned(),
        ]),
        "{doc:#}"
    );
    assert_eq!(status, 2);
    assert!(
        new.outside("nft -s list table inet filter")
            .contains("ip saddr 192.0.2.66 drop"),
        "the rule is live on new"
    );
    assert_eq!(
        new.sh_ok("sysctl -n net.core.somaxconn net.ipv4.tcp_fin_timeout"),
        "8192\n15\n"
    );
    assert_eq!(new.sh_ok("systemctl is-enabled nightly.timer"), "enabled\n");
    assert_eq!(
        new.sh_ok("cat /sys/kernel/mm/transparent_hugepage/enabled"),
        "never\n"
    );
    assert_eq!(new.modprobe_calls(), "modprobe wireguard (options: )\n");
    assert_eq!(
        old.modprobe_calls(),
        "modprobe wireguard (options: )\n",
        "only the admin's own call"
    );
    assert_eq!(
        new.sh_ok("cut -d' ' -f1 /proc/modules"),
        "dm_mod\nvirtio_net\nwireguard\n"
    );
}

#[test]
fn this_machine_compared_with_itself_is_empty_and_bad_snapshots_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let a: PathBuf = tmp.path().join("a.json");
    let out = converge(&["snapshot", "-o", a.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let b = tmp.path().join("b.json");
    let out = converge(&["snapshot", "-o", b.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let out = converge(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    assert_eq!(
        text,
        format!(
            "compare: no differences between {} and {}\n",
            a.display(),
            b.display()
        )
    );
    let out = converge(&["compare", a.to_str().unwrap(), "live"]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));

    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"format\": \"converge-snapshot\",\n  \"version\": 1,\n  \"host\": 7\n}\n",
    )
    .unwrap();
    let out = converge(&["compare", bad.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: {}:4:11: invalid snapshot: invalid type: integer `7`, expected struct HostInfo",
            bad.display()
        )),
        "{err}"
    );
    assert!(err.contains("4 |   \"host\": 7"), "{err}");
    std::fs::write(&bad, "[1, 2]\n").unwrap();
    let out = converge(&["compare", bad.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a converge snapshot"), "{err}");
    let out = converge(&[
        "compare",
        tmp.path().join("missing.json").to_str().unwrap(),
        "live",
    ]);
    assert_eq!(code(&out), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing.json: cannot read snapshot: No such file or directory"),
        "{err}"
    );
}

/// Writes a snapshot document with only `files` and a host name, as anyone could write one.
fn hand_written(path: &Path, hostname: &str, files: Value) {
    let text = serde_json::to_string_pretty(&serde_json::json!({
        "format": "converge-snapshot",
        "version": 1,
        "host": {"hostname": hostname, "root": "/", "kernel": "6.1", "taken": 1, "paths": ["/etc"]},
        "sysctl": {}, "packages": {}, "units": {}, "users": {}, "groups": {},
        "files": files,
    }))
    .unwrap();
    std::fs::write(path, text).unwrap();
}

/// A temp dir with s.json, a snapshot of one file, /etc/a.conf.
fn one_file_snapshot() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("s.json");
    hand_written(
        &snap,
        "h",
        serde_json::json!({"/etc/a.conf": text_file("a\n")}),
    );
    (tmp, snap)
}

fn text_file(content: &str) -> Value {
    serde_json::json!({"type": "file", "owner": "root", "group": "root", "mode": "0644",
        "size": content.len(), "sha256": "00", "content": content})
}

/// A text file whose hash differs from [`text_file`]'s.
fn changed_text_file(content: &str) -> Value {
    let mut file = text_file(content);
    file["sha256"] = Value::from("11");
    file
}

fn capture_from(snapshot: &Path, role_file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "capture",
        "--from",
        snapshot.to_str().unwrap(),
        "--role",
        "r",
        "-o",
        role_file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    converge(&args)
}

/// `capture --from OLD --against NEW --role ROLE -o SRC/roles/ROLE.toml`, which must
/// succeed; the role's text.
fn captured(old: &Path, new: &Path, src: &Path, role: &str) -> String {
    let role_file = src.join(format!("roles/{role}.toml"));
    let out = converge(&[
        "capture",
        "--from",
        old.to_str().unwrap(),
        "--against",
        new.to_str().unwrap(),
        "--role",
        role,
        "-o",
        role_file.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    std::fs::read_to_string(&role_file).unwrap()
}

/// Every entry under `dir`, relative, sorted: what a command left behind.
fn tree_of(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.symlink_metadata().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn capture_refuses_a_snapshot_path_that_leaves_the_source_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("evil.json");
    let victim = tmp.path().join("victim.conf");
    std::fs::write(&victim, "mine\n").unwrap();
    // The copy of /etc/../../../../victim.conf would land at SRC/files/r/etc/../../../../.
    let evil = "/etc/../../../../victim.conf";
    hand_written(
        &snap,
        "h",
        serde_json::json!({"/etc/a.conf": text_file("a\n"), evil: text_file("owned\n")}),
    );
    let src = tmp.path().join("src");
    let out = capture_from(&snap, &src.join("roles/r.toml"), &[]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "invalid snapshot: file path \"{evil}\" has a `..` component: expected a clean absolute path"
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine\n");
    assert!(!src.exists(), "{:?}", tree_of(&src));
    for bad in ["etc/a\u{0}b", "/etc//a", "/etc/./a", "/"] {
        hand_written(&snap, "h", serde_json::json!({ bad: text_file("x\n") }));
        let out = capture_from(&snap, &src.join("roles/r.toml"), &[]);
        assert_eq!(code(&out), 1, "{bad:?}: {}", output_text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("expected a clean absolute path"),
            "{bad:?}: {}",
            output_text(&out)
        );
        assert!(!src.exists(), "{bad:?}");
    }
}

#[test]
fn capture_never_writes_through_a_link_planted_in_the_source() {
    let (tmp, snap) = one_file_snapshot();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("files")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, src.join("files/r")).unwrap();
    let role_file = src.join("roles/r.toml");
    let out = capture_from(&snap, &role_file, &[]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "{} exists (maybe edited by hand since it was captured): pass --force to replace it",
            src.join("files/r").display()
        )),
        "{}",
        output_text(&out)
    );
    assert!(tree_of(&elsewhere).is_empty());
    assert!(!role_file.exists());
    // --force replaces the link itself; what it pointed to is never touched.
    let out = capture_from(&snap, &role_file, &["--force"]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    assert!(tree_of(&elsewhere).is_empty(), "{:?}", tree_of(&elsewhere));
    assert!(src.join("files/r").symlink_metadata().unwrap().is_dir());
    assert_eq!(
        std::fs::read_to_string(src.join("files/r/etc/a.conf")).unwrap(),
        "a\n"
    );
    // A link in place of files/ itself is refused even with --force.
    let src2 = tmp.path().join("src2");
    std::fs::create_dir(&src2).unwrap();
    std::os::unix::fs::symlink(&elsewhere, src2.join("files")).unwrap();
    let out = capture_from(&snap, &src2.join("roles/r.toml"), &["--force"]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a directory (a link or a file)"),
        "{}",
        output_text(&out)
    );
    assert!(tree_of(&elsewhere).is_empty(), "{:?}", tree_of(&elsewhere));
    assert_eq!(tree_of(&src2), vec!["files".to_owned()]);
}

#[test]
fn a_capture_sweeps_what_a_killed_one_left_in_the_source_and_nothing_else() {
    let (tmp, snap) = one_file_snapshot();
    let src = tmp.path().join("src");
    // Pids above pid_max: their runs are surely dead.
    let killed = src.join(".converge-tmp-999999999-killed");
    let recent = src.join(".converge-tmp-999999999-recent");
    let planted = src.join(".converge-tmp-999999999-link");
    let elsewhere = tmp.path().join("elsewhere");
    for d in [&killed, &recent, &elsewhere] {
        std::fs::create_dir_all(d.join("roles")).unwrap();
        std::fs::write(d.join("roles/r.toml"), "# half\n").unwrap();
    }
    std::os::unix::fs::symlink(&elsewhere, &planted).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for d in [&killed, &elsewhere] {
        std::fs::File::open(d)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let out = capture_from(&snap, &src.join("roles/r.toml"), &[]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    // A run of the last hour may be alive in another pid namespace; a link is not ours.
    assert_eq!(
        tree_of(&src)
            .into_iter()
            .filter(|e| e.starts_with('.'))
            .collect::<Vec<_>>(),
        [
            ".converge-tmp-999999999-link",
            ".converge-tmp-999999999-recent",
            ".converge-tmp-999999999-recent/roles",
            ".converge-tmp-999999999-recent/roles/r.toml",
        ]
    );
    assert_eq!(tree_of(&elsewhere), ["roles", "roles/r.toml"]);
}

#[test]
fn a_host_name_cannot_add_a_declaration_to_the_captured_role() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("s.json");
    let host = "db1\n[[exec]]\ncommand = \"touch /tmp/owned\"\r\n#";
    hand_written(
        &snap,
        host,
        serde_json::json!({"/etc/a\" x = 1 #.conf": text_file("a\n")}),
    );
    let src = tmp.path().join("src");
    let role_file = src.join("roles/r.toml");
    let out = capture_from(&snap, &role_file, &[]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let text = std::fs::read_to_string(&role_file).unwrap();
    let role: toml::Table = toml::from_str(&text).unwrap();
    let kinds: Vec<&String> = role.keys().collect();
    assert_eq!(kinds, ["file"], "{text}");
    assert_eq!(
        role["file"][0]["path"].as_str(),
        Some("/etc/a\" x = 1 #.conf")
    );
    assert!(
        text.contains("(host db1\\n[[exec]]\\ncommand = \"touch /tmp/owned\"\\r\\n#, taken"),
        "{text}"
    );
    assert!(text.lines().all(|l| !l.starts_with("[[exec]]")), "{text}");
}

#[test]
fn capture_refuses_to_replace_a_role_without_force_and_leaves_nothing_when_invalid() {
    let (tmp, snap) = one_file_snapshot();
    let src = tmp.path().join("src");
    let role_file = src.join("roles/r.toml");
    let out = capture_from(&snap, &role_file, &[]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    // Edited by hand since.
    std::fs::write(&role_file, "# mine\n").unwrap();
    std::fs::write(src.join("files/r/etc/a.conf"), "edited\n").unwrap();
    let before = tree_of(&src);
    let out = capture_from(&snap, &role_file, &[]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "{} exists (maybe edited by hand since it was captured): pass --force to replace it",
            role_file.display()
        )),
        "{}",
        output_text(&out)
    );
    assert_eq!(std::fs::read_to_string(&role_file).unwrap(), "# mine\n");
    assert_eq!(
        std::fs::read_to_string(src.join("files/r/etc/a.conf")).unwrap(),
        "edited\n"
    );
    assert_eq!(tree_of(&src), before);
    // A role that does not validate (a mode no file can have) is not written at all.
    let mut bad = text_file("b\n");
    bad["mode"] = "9999".into();
    hand_written(&snap, "h", serde_json::json!({"/etc/b.conf": bad}));
    let out = capture_from(&snap, &role_file, &["--force"]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("does not pass validate: nothing was written"),
        "{}",
        output_text(&out)
    );
    assert_eq!(std::fs::read_to_string(&role_file).unwrap(), "# mine\n");
    assert_eq!(tree_of(&src), before);
    let fresh = tmp.path().join("fresh");
    let out = capture_from(&snap, &fresh.join("roles/r.toml"), &[]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    assert!(!fresh.exists(), "{:?}", tree_of(&fresh));
    // --force replaces both, whole.
    hand_written(
        &snap,
        "h",
        serde_json::json!({"/etc/c.conf": text_file("c\n")}),
    );
    let out = capture_from(&snap, &role_file, &["--force"]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    assert!(std::fs::read_to_string(&role_file)
        .unwrap()
        .contains("path = \"/etc/c.conf\""));
    assert_eq!(
        tree_of(&src.join("files/r")),
        ["etc", "etc/c.conf"].map(String::from)
    );
}

#[test]
fn compare_and_capture_keep_the_caps_check_has_on_diffs() {
    let tmp = tempfile::tempdir().unwrap();
    // 780 KB where every line differs: a minimal line diff of it took 20 s unbounded.
    let text = |c: char| -> String { (0..60_000).map(|i| format!("{c}{i:011}\n")).collect() };
    let (a, b) = (tmp.path().join("a.json"), tmp.path().join("b.json"));
    for (path, c) in [(&a, 'a'), (&b, 'b')] {
        let mut file = text_file(&text(c));
        file["sha256"] = c.to_string().into();
        hand_written(path, "h", serde_json::json!({"/etc/big.conf": file}));
    }
    let out = converge(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 2, "{}", output_text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &doc["differences"][0];
    assert_eq!(d["id"], "/etc/big.conf");
    assert!(d.get("diff").is_none(), "{}", output_text(&out));
    assert_eq!(d["summary"]["lines_removed"], 60_000);
    assert_eq!(d["summary"]["lines_added"], 60_000);
    let reason = d["summary"]["reason"].as_str().unwrap();
    assert!(
        reason == "diff took more than 2s" || reason.starts_with("diff of "),
        "{reason}"
    );
    let out = converge(&["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(
        human.contains(&format!(
            "      content ({reason}, not shown): 60000 lines removed, 60000 added\n"
        )),
        "{}",
        &human[..human.len().min(2000)]
    );
    let src = tmp.path().join("src");
    let out = capture_from(
        &a,
        &src.join("roles/r.toml"),
        &["--against", b.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    assert_eq!(
        std::fs::read_to_string(src.join("files/r/etc/big.conf")).unwrap(),
        text('a')
    );
    let role = std::fs::read_to_string(src.join("roles/r.toml")).unwrap();
    assert!(
        role.contains("# b.json has other content\n[[file]]"),
        "{role}"
    );
}

/// A tree with a config file and a token, each world-readable, and a private one.
fn tree_with_secrets(root: &Path) {
    std::fs::create_dir_all(root.join("etc/app")).unwrap();
    std::fs::write(root.join("etc/app/app.conf"), "port = 1\n").unwrap();
    std::fs::write(root.join("etc/app/api.token"), "tok-old\n").unwrap();
    std::fs::write(root.join("etc/app/db.conf"), "password = hunter2\n").unwrap();
    std::fs::set_permissions(
        root.join("etc/app/db.conf"),
        PermissionsExt::from_mode(0o640),
    )
    .unwrap();
}

fn snapshot_of(root: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "snapshot",
        "--root",
        root.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = converge(&args);
    assert_eq!(code(&run), 0, "{}", output_text(&run));
}

#[test]
fn a_secret_stays_secret_on_a_live_side_of_compare_and_capture() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    tree_with_secrets(&root);
    let taken = tmp.path().join("taken.json");
    snapshot_of(&root, &taken, &["--secret", "/etc/app/*.token"]);
    // Later, on the live tree: the token changed, a new one appeared.
    std::fs::write(root.join("etc/app/api.token"), "tok-live\n").unwrap();
    std::fs::write(root.join("etc/app/new.token"), "tok-new\n").unwrap();
    let rt = root.to_str().unwrap();
    let out = converge(&["compare", taken.to_str().unwrap(), "live", "--root", rt]);
    assert_eq!(code(&out), 2, "{}", output_text(&out));
    let text = output_text(&out);
    assert!(text.contains("/etc/app/new.token"), "{text}");
    assert!(!text.contains("tok-"), "a secret's text was shown:\n{text}");
    let src = tmp.path().join("src");
    let out = capture_from(
        Path::new("live"),
        &src.join("roles/r.toml"),
        &["--root", rt, "--against", taken.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let role = std::fs::read_to_string(src.join("roles/r.toml")).unwrap();
    assert!(!src.join("files/r/etc/app/new.token").exists(), "{role}");
    assert!(!src.join("files/r/etc/app/api.token").exists(), "{role}");
    assert!(
        role.contains("/etc/app/new.token: a secret, recorded by hash only"),
        "{role}"
    );
    // --secret given to compare holds for both files too; and what either file was taken
    // with holds for the other file.
    let later = tmp.path().join("later.json");
    std::fs::write(root.join("etc/app/app.conf"), "port = 2\n").unwrap();
    snapshot_of(&root, &later, &[]);
    let out = converge(&[
        "compare",
        taken.to_str().unwrap(),
        later.to_str().unwrap(),
        "--secret",
        "/etc/app/app.conf",
    ]);
    let text = output_text(&out);
    assert!(text.contains("/etc/app/app.conf"), "{text}");
    assert!(!text.contains("tok-"), "{text}");
    assert!(!text.contains("port = "), "{text}");
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn private_content_is_captured_only_when_asked_and_publish_refuses_it_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    tree_with_secrets(&root);
    let plain = tmp.path().join("plain.json");
    snapshot_of(&root, &plain, &[]);
    let src = tmp.path().join("src");
    let out = capture_from(&plain, &src.join("roles/r.toml"), &[]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let role = std::fs::read_to_string(src.join("roles/r.toml")).unwrap();
    assert!(role.contains("/etc/app/db.conf: not world-readable on plain.json: its text is not in the snapshot (take it with --include-private to copy it)"), "{role}");
    assert!(!src.join("files/r/etc/app/db.conf").exists());

    let full = tmp.path().join("full.json");
    snapshot_of(&root, &full, &["--include-private"]);
    let out = capture_from(&full, &src.join("roles/r.toml"), &["--force"]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let role = std::fs::read_to_string(src.join("roles/r.toml")).unwrap();
    assert!(
        role.contains("path = \"/etc/app/db.conf\"\nsource = \"r/etc/app/db.conf\"\nowner = \"root\"\ngroup = \"root\"\nmode = \"0640\"\nsensitive = true\n"),
        "{role}"
    );
    let copy = src.join("files/r/etc/app/db.conf");
    assert_eq!(
        std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bundle = tmp.path().join("bundle");
    let out = converge(&["publish", src.to_str().unwrap(), bundle.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("publish: 1 file under files/ is not world-readable, and every bundle object is readable by anyone who can fetch the bundle:\n  files/r/etc/app/db.conf (mode 0600)\n"),
        "{err}"
    );
    assert!(err.contains("pass --allow-private"), "{err}");
    assert!(!bundle.join("manifest.json").exists());
    let out = converge(&[
        "publish",
        src.to_str().unwrap(),
        bundle.to_str().unwrap(),
        "--allow-private",
    ]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
}

#[test]
fn a_path_a_role_cannot_name_is_noted_and_the_rest_is_captured() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("s.json");
    hand_written(
        &snap,
        "h",
        serde_json::json!({
            "/etc/a\nb.conf": text_file("x\n"),
            "/etc/ok.conf": text_file("ok\n"),
            "/etc/l": {"type": "symlink", "owner": "root", "group": "root", "mode": "0777",
                       "target": "x\r[[exec]]"},
        }),
    );
    let src = tmp.path().join("src");
    let out = capture_from(&snap, &src.join("roles/r.toml"), &[]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let role = std::fs::read_to_string(src.join("roles/r.toml")).unwrap();
    assert!(
        role.contains("#   - /etc/a\\nb.conf: its path or link target holds a control character, which a role cannot name\n"),
        "{role}"
    );
    assert!(
        role.contains("#   - /etc/l: its path or link target holds a control character"),
        "{role}"
    );
    assert_eq!(
        std::fs::read_to_string(src.join("files/r/etc/ok.conf")).unwrap(),
        "ok\n"
    );
    assert_eq!(
        tree_of(&src.join("files/r")),
        ["etc", "etc/ok.conf"].map(String::from)
    );
}

#[test]
fn a_timer_an_admin_wrote_is_captured_as_one_job_without_new() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("s.json");
    hand_written(
        &snap,
        "h",
        serde_json::json!({
            "/etc/systemd/system/nightly.service": text_file(NIGHTLY_SERVICE),
            "/etc/systemd/system/nightly.timer": text_file(NIGHTLY_TIMER),
        }),
    );
    // The units as systemctl lists them: the timer enabled (Debian's preset enables what
    // no preset names), its service static.
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    doc["units"] = serde_json::json!({
        "nightly.service": {"state": "static"},
        "nightly.timer": {"state": "enabled", "preset": "enabled"},
    });
    std::fs::write(&snap, doc.to_string()).unwrap();
    let src = tmp.path().join("src");
    let out = capture_from(&snap, &src.join("roles/r.toml"), &[]);
    assert_eq!(code(&out), 0, "{}", output_text(&out));
    let role = std::fs::read_to_string(src.join("roles/r.toml")).unwrap();
    assert!(
        role.contains(
            "[[timer]]\nname = \"nightly\"\nenabled = true\n\
             timer = { source = \"r/etc/systemd/system/nightly.timer\" }\n\
             service = { source = \"r/etc/systemd/system/nightly.service\" }\n"
        ),
        "{role}"
    );
    assert!(!role.contains("[[file]]"), "{role}");
    assert!(!role.contains("[[service]]"), "{role}");
    assert_eq!(
        std::fs::read_to_string(src.join("files/r/etc/systemd/system/nightly.service")).unwrap(),
        NIGHTLY_SERVICE
    );
    let out = converge(&["validate", "--source", src.to_str().unwrap(), "--role", "r"]);
    assert_eq!(code(&out), 0, "{}\n{role}", output_text(&out));
}

/// A hand-written snapshot: `host` and the other top-level fields merged over an empty one.
fn snapshot_json(path: &Path, host: Value, rest: Value) {
    let mut doc = serde_json::json!({
        "format": "converge-snapshot",
        "version": 1,
        "host": {"hostname": "h", "root": "/", "kernel": "6.1", "taken": 1, "paths": ["/etc"]},
        "sysctl": {}, "packages": {}, "units": {}, "users": {}, "groups": {}, "files": {},
    });
    for (k, v) in host.as_object().unwrap() {
        doc["host"][k] = v.clone();
    }
    for (k, v) in rest.as_object().unwrap() {
        doc[k] = v.clone();
    }
    std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn snapshots_of_different_scopes_are_compared_where_both_looked_and_that_is_said() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old.json"), tmp.path().join("new.json"));
    // An /etc-only snapshot from before the wider default, and one of the default scope.
    snapshot_json(
        &old,
        serde_json::json!({"hostname": "old"}),
        serde_json::json!({"files": {"/etc/a.conf": text_file("a\n")}}),
    );
    snapshot_json(
        &new,
        serde_json::json!({"hostname": "new",
            "paths": ["/etc", "/opt", "/root"],
            "selected": {"/opt": "capped", "/root": "home"},
            "capped": ["/opt: more than 20000 entries; the rest is not recorded"]}),
        serde_json::json!({"files": {
            "/etc/a.conf": changed_text_file("b\n"),
            "/opt/app.conf": text_file("x\n"),
            "/root/.bashrc": text_file("y\n"),
        }}),
    );
    let (status, ids, doc) = differences(&old, &new);
    assert_eq!(
        ids,
        BTreeSet::from(["file /etc/a.conf".to_owned()]),
        "{doc:#}"
    );
    assert_eq!(status, 2);
    let notes = doc["notes"].as_array().unwrap();
    assert_eq!(
        notes[0],
        format!(
            "the snapshots cover different files ({}: /etc; {}: /etc, /opt (capped), /root (home)): only files both would have recorded are compared",
            old.display(),
            new.display()
        )
    );
    assert_eq!(
        notes[1],
        format!(
            "{}: /opt: more than 20000 entries; the rest is not recorded",
            new.display()
        )
    );
    let text = String::from_utf8_lossy(
        &converge(&["compare", old.to_str().unwrap(), new.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(
        text.contains("note: the snapshots cover different files"),
        "{text}"
    );
}

/// The sized settings of an untuned host of `memory_kb` KiB and `cpus` CPUs, as its kernel
/// computes them.
fn sized_sysctls(memory_kb: u64, cpus: u64) -> Value {
    let pages = memory_kb / 4;
    let limit = |share: u64| pages / share;
    let triple = |l: u64| format!("{}\t{}\t{}", l / 4 * 3, l, l / 4 * 3 * 2);
    let setting = |v: String| serde_json::json!({"value": v, "access": "read-write"});
    serde_json::json!({
        "fs.file-max": setting((memory_kb / 10).to_string()),
        "kernel.threads-max": setting((memory_kb / 128).to_string()),
        "user.max_user_namespaces": setting((memory_kb / 256).to_string()),
        "net.ipv4.tcp_mem": setting(triple(limit(16))),
        "net.ipv4.udp_mem": setting(triple(limit(8))),
        "kernel.pid_max": setting((1024 * cpus).max(32768).to_string()),
        "net.core.somaxconn": setting("4096".to_owned()),
    })
}

#[test]
fn settings_the_kernel_sizes_from_the_machine_differ_only_when_tuned() {
    let tmp = tempfile::tempdir().unwrap();
    let (small, big) = (tmp.path().join("small.json"), tmp.path().join("big.json"));
    snapshot_json(
        &small,
        serde_json::json!({"hostname": "small", "size": {"memory_kb": 4_026_532, "cpus": 2}}),
        serde_json::json!({"sysctl": sized_sysctls(4_026_532, 2)}),
    );
    let mut tuned = sized_sysctls(65_842_176, 64);
    tuned["fs.file-max"]["value"] = Value::from("2097152");
    snapshot_json(
        &big,
        serde_json::json!({"hostname": "big", "size": {"memory_kb": 65_842_176, "cpus": 64}}),
        serde_json::json!({"sysctl": tuned}),
    );
    let (status, ids, doc) = differences(&small, &big);
    assert_eq!(
        ids,
        BTreeSet::from(["sysctl fs.file-max".to_owned()]),
        "{doc:#}"
    );
    assert_eq!(status, 2);
}

#[test]
fn modules_loaded_by_hand_are_captured_and_hardware_drivers_and_dependencies_are_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (tmp.path().join("old.json"), tmp.path().join("new.json"));
    snapshot_json(
        &old,
        serde_json::json!({"hostname": "old",
            "cmdline": "BOOT_IMAGE=/vmlinuz-6.1.0-13 root=UUID=aaaa ro transparent_hugepage=never"}),
        serde_json::json!({
            "kernel_modules": ["br_netfilter", "bridge", "virtio_net"],
            "kernel_modules_implied": {
                "bridge": "needed by br_netfilter",
                "virtio_net": "a driver of this machine's hardware (virtio:virtio_net)"
            },
            "nftables": {"inet/filter": "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tip saddr 192.0.2.66 drop\n\t}\n"},
        }),
    );
    snapshot_json(
        &new,
        serde_json::json!({"hostname": "new",
            "cmdline": "BOOT_IMAGE=/vmlinuz-6.1.0-18 root=UUID=bbbb ro"}),
        serde_json::json!({
            "kernel_modules": ["nvme"],
            "kernel_modules_implied": {"nvme": "a driver of this machine's hardware (pci:nvme)"},
            "nftables": {},
        }),
    );
    let (status, ids, doc) = differences(&old, &new);
    assert_eq!(
        ids,
        BTreeSet::from([
            "kernel_module br_netfilter".to_owned(),
            "nftables inet/filter".to_owned(),
            "kernel_cmdline transparent_hugepage".to_owned(),
        ]),
        "{doc:#}"
    );
    assert_eq!(status, 2);
    let src = tmp.path().join("src");
    let role = captured(&old, &new, &src, "k");
    assert!(
        role.contains("[[kernel_module]]\nname = \"br_netfilter\"\n"),
        "{role}"
    );
    assert!(!role.contains("name = \"bridge\""), "{role}");
    assert!(
        role.contains(
            "[[nftables]]\nfamily = \"inet\"\ntable = \"filter\"\ncontent = \"\"\"\n\\tchain input {\n"
        ),
        "{role}"
    );
    assert!(
        role.contains("#   - kernel command line transparent_hugepage: never on old, (not set) on new; not captured: the boot loader holds it"),
        "{role}"
    );
}

/// Captures `old` against `new` (default-scope snapshots of both) into the role `effects`;
/// returns the source directory and the role's text.
fn capture_effects(tmp: &Path, old: &Host, new: &Host) -> (PathBuf, String) {
    let (old_json, new_json) = (tmp.join("old.json"), tmp.join("new.json"));
    old.snapshot(&old_json, &[]);
    new.snapshot(&new_json, &[]);
    let src = tmp.join("src");
    let role = captured(&old_json, &new_json, &src, "effects");
    (src, role)
}

/// Applies the captured role in `host`'s tree (chrooted, in its namespace, the source put
/// outside the snapshot's scope); returns the exit code and what changed, in the order the
/// run changed it.
fn apply_effects(src: &Path, host: &Host) -> (i32, Vec<String>) {
    let dest = host.root().join("var/lib/capture-src");
    if !dest.exists() {
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&dest)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let out = host.sh(
        "converge --color never apply --source /var/lib/capture-src --role effects \
         --state-dir /var/lib/converge-test --format json",
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("apply --format json: {e}\n{}", output_text(&out)));
    let changed = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] != "in_sync")
        .map(|r| format!("{} {}", r["id"].as_str().unwrap(), r["status"]))
        .collect();
    (code(&out), changed)
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_locale_enabled_on_old_is_generated_on_new_once() {
    let tmp = tempfile::tempdir().unwrap();
    let old = Host::new(
        "fx-locale-old",
        "old-app1",
        "0123456789abcdef0123456789abcde1",
        &SAME_KERNEL,
    );
    let new = Host::new(
        "fx-locale-new",
        "new-app1",
        "fedcba9876543210fedcba987654321e",
        &SAME_KERNEL,
    );
    // Both run Debian's locales package, installed from the mirror as the hosts were built
    // (new from the same files old downloaded).
    let install = "apt-get update -q >/dev/null && apt-get install -y -q locales >/dev/null";
    old.ch.run_ok(&["sh", "-c", install]);
    let archives = |h: &Host| h.root().join("var/cache/apt/archives");
    for deb in std::fs::read_dir(archives(&old)).unwrap().flatten() {
        if deb.file_name().to_string_lossy().ends_with(".deb") {
            copy_file(&deb.path(), &archives(&new).join(deb.file_name()));
        }
    }
    new.ch.run_ok(&["sh", "-c", install]);
    // On old an admin enabled a locale the way Debian says to.
    old.sh_ok("sed -i 's/^# en_US.UTF-8 UTF-8$/en_US.UTF-8 UTF-8/' /etc/locale.gen && locale-gen >/dev/null");
    assert!(old.sh_ok("locale -a").contains("en_US.utf8\n"));
    assert!(!new.sh_ok("locale -a").contains("en_US.utf8\n"));

    let (src, role) = capture_effects(tmp.path(), &old, &new);
    assert!(
        role.contains("[[exec]]\nname = \"locale-gen\"\ncommand = \"locale-gen\"\n"),
        "{role}"
    );
    assert!(
        role.contains("after = [\"file:/etc/locale.gen\"]"),
        "{role}"
    );

    let (status, changed) = apply_effects(&src, &new);
    assert_eq!(
        changed,
        [
            "file:/etc/locale.gen \"changed\"",
            "exec:locale-gen \"changed\""
        ],
        "{role}"
    );
    assert_eq!(status, 2);
    assert!(new.sh_ok("locale -a").contains("en_US.utf8\n"));
    assert_eq!(
        new.sh_ok("LC_ALL=en_US.UTF-8 locale charmap 2>&1"),
        "UTF-8\n",
        "the locale is usable on new"
    );
    let (status, changed) = apply_effects(&src, &new);
    assert_eq!((status, changed), (0, Vec::<String>::new()));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn an_apt_source_added_on_old_is_updated_on_new_before_its_package_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = support::AptRepo::build(&tmp.path().join("fxrepo"), &[("fxtool", "1.0-1")]);
    let old = Host::new(
        "fx-apt-old",
        "old-app2",
        "0123456789abcdef0123456789abcde2",
        &SAME_KERNEL,
    );
    let new = Host::new(
        "fx-apt-new",
        "new-app2",
        "fedcba9876543210fedcba987654321d",
        &SAME_KERNEL,
    );
    // Both hosts reach only an archive of their own network: here, the same local
    // repository in each tree (outside the snapshot's scope), and no mirror.
    for host in [&old, &new] {
        std::fs::remove_file(host.root().join("etc/apt/sources.list")).unwrap();
        let dir = host.root().join("var/lib/fxrepo");
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(repo.dir()).unwrap().flatten() {
            copy_file(&f.path(), &dir.join(f.file_name()));
        }
        host.sh_ok("apt-get update -q >/dev/null");
    }
    // On old an admin added the source and installed a package from it.
    old.sh_ok(
        "echo 'deb [trusted=yes] file:/var/lib/fxrepo ./' > /etc/apt/sources.list.d/fx.list
         apt-get update -q >/dev/null && apt-get install -y -q fxtool >/dev/null",
    );

    let (src, role) = capture_effects(tmp.path(), &old, &new);
    assert!(
        role.contains("[[exec]]\nname = \"apt-update\"\ncommand = \"apt-get update -q && touch /var/lib/apt/lists\"\n"),
        "{role}"
    );
    assert!(
        role.contains("name = \"fxtool\"\nafter = [\"file:/etc/apt/sources.list.d/fx.list\", \"exec:apt-update\"]"),
        "{role}"
    );

    let (status, changed) = apply_effects(&src, &new);
    assert_eq!(
        changed,
        [
            "file:/etc/apt/sources.list.d/fx.list \"changed\"",
            "exec:apt-update \"changed\"",
            "package:fxtool \"changed\""
        ],
        "{role}"
    );
    assert_eq!(status, 2);
    assert_eq!(
        new.sh_ok("dpkg-query -W -f '${Version} ${db:Status-Status}' fxtool"),
        "1.0-1 installed"
    );
    let (status, changed) = apply_effects(&src, &new);
    assert_eq!((status, changed), (0, Vec::<String>::new()));
}

/// A stand-in for GRUB's update-grub: builds grub.cfg from /etc/default/grub as the real one
/// does, and counts its runs.
const UPDATE_GRUB: &str = "#!/bin/sh\nset -e\necho ran >> /var/log/update-grub.runs\n. /etc/default/grub\nmkdir -p /boot/grub\necho \"linux /vmlinuz root=/dev/vda1 ro $GRUB_CMDLINE_LINUX_DEFAULT\" > /boot/grub/grub.cfg\n";

const DEFAULT_GRUB: &str = "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n";

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_kernel_command_line_set_on_old_runs_update_grub_on_new_once_and_nothing_without_grub() {
    let tmp = tempfile::tempdir().unwrap();
    let old = Host::new(
        "fx-grub-old",
        "old-app3",
        "0123456789abcdef0123456789abcde3",
        &SAME_KERNEL,
    );
    let bare = Host::new(
        "fx-grub-bare",
        "new-app3",
        "fedcba9876543210fedcba987654321c",
        &SAME_KERNEL,
    );
    let booted = Host::new(
        "fx-grub-new",
        "new-app4",
        "fedcba9876543210fedcba987654321b",
        &SAME_KERNEL,
    );
    for host in [&old, &bare, &booted] {
        std::fs::write(host.root().join("etc/default/grub"), DEFAULT_GRUB).unwrap();
    }
    for host in [&old, &booted] {
        let tool = host.root().join("usr/sbin/update-grub");
        std::fs::write(&tool, UPDATE_GRUB).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    old.sh_ok("sed -i 's/\"quiet\"/\"quiet mitigations=off\"/' /etc/default/grub && update-grub");

    let (src, role) = capture_effects(tmp.path(), &old, &bare);
    assert!(
        role.contains("[[exec]]\nname = \"update-grub\"\ncommand = \"update-grub\"\n"),
        "{role}"
    );
    assert!(
        role.contains("after = [\"file:/etc/default/grub\"]"),
        "{role}"
    );
    assert!(
        role.contains("\n# After applying:\n#   - /etc/default/grub is captured with update-grub: a reboot is needed before the new kernel command line holds\n"),
        "{role}"
    );
    assert!(!role.contains("Seen but not captured"), "{role}");

    // Where GRUB is not installed the file changes and the exec has nothing to run.
    let (status, changed) = apply_effects(&src, &bare);
    assert_eq!(changed, ["file:/etc/default/grub \"changed\""], "{role}");
    assert_eq!(status, 2);
    assert!(!bare.root().join("boot/grub/grub.cfg").exists());
    let (status, changed) = apply_effects(&src, &bare);
    assert_eq!((status, changed), (0, Vec::<String>::new()));

    // Where it is, update-grub runs once and the boot config has the new command line.
    let (status, changed) = apply_effects(&src, &booted);
    assert_eq!(
        changed,
        [
            "file:/etc/default/grub \"changed\"",
            "exec:update-grub \"changed\""
        ],
        "{role}"
    );
    assert_eq!(status, 2);
    let (status, changed) = apply_effects(&src, &booted);
    assert_eq!((status, changed), (0, Vec::<String>::new()));
    assert_eq!(
        std::fs::read_to_string(booted.root().join("var/log/update-grub.runs")).unwrap(),
        "ran\n"
    );
    assert_eq!(
        std::fs::read_to_string(booted.root().join("boot/grub/grub.cfg")).unwrap(),
        "linux /vmlinuz root=/dev/vda1 ro quiet mitigations=off\n"
    );
}
