//! The shipped web role against a real nginx on a booted systemd: a site dropped into
//! conf.d by hand is purged, and nginx is told, so it stops serving it; nginx itself checks
//! every new nginx.conf before it goes live, and the site's health check runs after.
//! Needs root and `scripts/test-deps`.

mod support;

use std::path::Path;
use std::process::Command;

use support::tools::{assert_success, output_text};
use support::*;

/// How long nginx may take to answer from a reloaded config: a bound on a hang.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(20);

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Copies the shipped source tree to the container's /mnt/share/src.
fn with_shipped_roles(ct: &Container) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = ct.share_dir().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for dir in ["roles", "templates", "files"] {
        let out = Command::new("cp")
            .arg("-a")
            .arg(repo.join(dir))
            .arg(&src)
            .output()
            .unwrap();
        assert_success("cp", &out);
    }
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn a_purged_site_reloads_nginx_and_is_no_longer_served() {
    let ct = Container::boot("webrole");
    with_shipped_roles(&ct);
    let apply = || ct.converge("apply", "web", &[]);
    let first = apply();
    assert_eq!(code(&first), 2, "{}", output_text(&first));
    let in_sync = apply();
    assert_eq!(code(&in_sync), 0, "{}", output_text(&in_sync));

    // Someone drops a site in by hand, and nginx serves it.
    let stray =
        "server {\n  listen 127.0.0.1:8089;\n  location / { return 200 \"stray\\n\"; }\n}\n";
    std::fs::write(ct.root().join("etc/nginx/conf.d/stray.conf"), stray).unwrap();
    ct.exec_ok(&["systemctl", "reload", "nginx"]);
    let curl = || {
        let out = ct.exec(&["curl", "-sS", "http://127.0.0.1:8089/"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until("nginx serves the stray site", SETTLE, || {
        curl() == "stray\n"
    });

    let purge = apply();
    assert_eq!(code(&purge), 2, "{}", output_text(&purge));
    let out = String::from_utf8_lossy(&purge.stdout);
    assert!(
        out.contains("    entry stray.conf: file → (remove)\n"),
        "{out}"
    );
    assert!(
        out.contains("↻ reloaded service:nginx (notified by directory:/etc/nginx/conf.d)"),
        "{out}"
    );
    // nginx reloads asynchronously: old workers answer until the new ones take over.
    wait_until("nginx no longer serves the purged site", SETTLE, || {
        curl().is_empty()
    });
    let again = apply();
    assert_eq!(code(&again), 0, "{}", output_text(&again));
}

#[test]
#[ignore = "needs root (container tier, scripts/test)"]
fn nginx_itself_refuses_a_broken_nginx_conf_and_the_live_one_keeps_serving() {
    let ct = Container::boot("webvalidate");
    with_shipped_roles(&ct);
    let apply = || ct.converge("apply", "web", &[]);
    // Debian's own nginx.conf is replaced: nginx accepted the candidate from its temp
    // place, includes and all, and the site answers after the reload.
    let first = apply();
    assert_eq!(code(&first), 2, "{}", output_text(&first));
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(
        out.contains(
            "♥ health:nginx passed: GET http://127.0.0.1/healthz → 200 with \"ok\" in the body\n"
        ),
        "{out}"
    );
    let conf = ct.root().join("etc/nginx/nginx.conf");
    let live = std::fs::read_to_string(&conf).unwrap();
    assert!(
        live.contains("include /etc/nginx/modules-enabled/*.conf;\n"),
        "{live}"
    );

    let template = ct.share_dir().join("src/templates/nginx/nginx.conf.hbs");
    let mut text = std::fs::read_to_string(&template).unwrap();
    text.push_str("bogus_directive on;\n");
    std::fs::write(&template, text).unwrap();
    let check = ct.converge("check", "web", &[]);
    assert_eq!(code(&check), 4, "{}", output_text(&check));
    let broken = apply();
    assert_eq!(code(&broken), 4, "{}", output_text(&broken));
    let out = String::from_utf8_lossy(&broken.stdout);
    assert!(
        out.contains("! file:/etc/nginx/nginx.conf  (role web)\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    validation failed (the old file was kept): `nginx -t -c {path}` exited with status 1: "
        ),
        "{out}"
    );
    // nginx names the managed path, not the temp copy it checked.
    assert!(
        out.contains("unknown directive \"bogus_directive\" in /etc/nginx/nginx.conf:"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), live);
    assert!(
        out.contains(
            "♥ health:nginx passed: GET http://127.0.0.1/healthz → 200 with \"ok\" in the body\n"
        ),
        "{out}"
    );
    assert_eq!(
        ct.exec_ok(&["curl", "-sS", "http://127.0.0.1/healthz"]),
        "ok\n"
    );
}
