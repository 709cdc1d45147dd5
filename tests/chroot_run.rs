//! `chroot /img converge ...` without /proc mounted in the image: converge refuses before
//! it changes anything, and facts are read all the same, warning about what they cannot
//! know. Needs root and `scripts/test-deps`.

mod support;

use std::process::Output;

use support::Chroot;

const ROLE: &str = "[[file]]\npath = \"/etc/app.conf\"\ncontent = \"x\\n\"\n\n[[group]]\nname = \"app\"\n\n[sysctl]\n\"net.core.somaxconn\" = 1234\n";

/// A chroot with the converge binary at /usr/local/bin/converge and a source tree in /srv.
fn image() -> Chroot {
    let ch = Chroot::new();
    support::install_binary(&ch.path().join("usr/local/bin"));
    std::fs::create_dir_all(ch.path().join("srv/src/roles")).unwrap();
    std::fs::write(ch.path().join("srv/src/roles/r.toml"), ROLE).unwrap();
    ch
}

fn text(out: &Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const RUN: &[&str] = &[
    "--source",
    "/srv/src",
    "--role",
    "r",
    "--state-dir",
    "/var/lib/ct",
];

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn without_proc_a_run_is_refused_before_anything_changes_and_facts_warn() {
    let ch = image();
    assert!(!ch.path().join("proc/self").exists());
    let before = ch.changed();
    for mode in ["check", "apply"] {
        let mut args = vec!["converge", mode];
        args.extend(RUN);
        let (code, stdout, stderr) = text(&ch.run(&args));
        assert_eq!((code, stdout.as_str()), (1, ""), "{mode}: {stderr}");
        // Facts come first, and say that /proc is missing too.
        assert!(
            stderr.ends_with(
            "converge: error: /proc is not mounted (/proc/self/fd: No such file or directory (os error 2)): \
             converge reaches managed files through /proc/self/fd, so that a directory swapped for a link \
             during a run is never followed. Mount it (mount -t proc proc /proc), or to build an image run \
             converge outside it with --root DIR instead of inside a chroot\n"
            ),
            "{stderr}"
        );
    }
    assert_eq!(ch.changed(), before);
    // The image's own files are read without /proc; what only /proc knows is said to be missing.
    let (code, stdout, stderr) = text(&ch.run(&["converge", "facts"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("facts.os.id = \"debian\"\n"), "{stdout}");
    assert!(
        stdout.contains("facts.memory.total_bytes = 0\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("cannot read /proc/meminfo (is /proc mounted?): the memory facts are 0"),
        "{stderr}"
    );
}
