//! A published bundle served by a real nginx, and the agent driven against it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use crate::support::Nginx;
use crate::support::{self, Project};

/// A project whose source tree is published into `out/` and served by nginx.
pub struct Served {
    pub p: Project,
    pub out: PathBuf,
    pub state: PathBuf,
    pub nginx: Nginx,
}

impl Served {
    pub fn new() -> Served {
        let p = Project::new();
        p.file(
            "roles/web.toml",
            "[[file]]\npath = \"/etc/app.conf\"\ntemplate = \"app.conf.hbs\"\nmode = \"0640\"\n\n[[file]]\npath = \"/etc/motd\"\ncontent = \"hello\\n\"\n",
        )
        .file("templates/app.conf.hbs", "version = 1\nhost = {{facts.hostname}}\n");
        let out = p.src().parent().unwrap().join("out");
        let state = p.src().parent().unwrap().join("state");
        publish(&p.src(), &out, None);
        let nginx = Nginx::serve(&out);
        Served {
            p,
            out,
            state,
            nginx,
        }
    }

    pub fn apply(&self, extra: &[&str]) -> support::Run {
        let url = format!("{}/", self.nginx.url());
        let state = self.state.display().to_string();
        let mut args = vec!["--state-dir", &state];
        args.extend_from_slice(extra);
        self.p.converge_from(&url, "apply", &["web"], &args)
    }

    /// Writes `agent.toml` for this source and state dir, plus `extra` lines.
    pub fn config(&self, extra: &str) -> String {
        let path = self.state.parent().unwrap().join("agent.toml");
        let text = format!(
            "source = \"{}/\"\nroles = [\"web\"]\nstate_dir = \"{}\"\n{extra}",
            self.nginx.url(),
            self.state.display()
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// `converge CMD --config CONFIG` into the project's root, with its facts.
    pub fn run_config(&self, cmd: &str, config: &str) -> support::Run {
        let root = self.p.root().display().to_string();
        let facts = self.p.facts_path().display().to_string();
        self.p
            .run(&[cmd, "--config", config, "--root", &root, "--facts", &facts])
    }

    pub fn record(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.join("last-run.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `(path, status)` of every request nginx logged, oldest first.
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.nginx
            .access_log()
            .lines()
            .filter_map(|l| {
                let mut quoted = l.split('"');
                let request = quoted.nth(1)?;
                let status = quoted.next()?.split_whitespace().next()?.parse().ok()?;
                Some((request.split_whitespace().nth(1)?.to_owned(), status))
            })
            .collect()
    }
}

pub fn publish(src: &Path, out: &Path, key: Option<&Path>) {
    let mut cmd = support::converge(&[std::ffi::OsStr::new("publish"), src.as_os_str()]);
    cmd.arg(out);
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
