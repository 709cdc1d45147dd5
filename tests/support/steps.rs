//! Shell steps run one after another in one namespace, each told apart afterwards with its
//! own output and exit code.

/// What one step printed (stdout and stderr together) and how it exited.
#[derive(Debug)]
pub struct Step {
    pub out: String,
    pub rc: i32,
}

/// `setup`, then each of `steps` with its output and exit code marked.
pub fn script(setup: &str, steps: &[&str]) -> String {
    let mut script = setup.to_owned();
    for s in steps {
        script.push_str(&format!("\necho '@@step'; {s} 2>&1; echo \"@@rc=$?\"\n"));
    }
    script
}

/// The steps of what a [`script`] printed on stdout.
pub fn split(stdout: &[u8]) -> Vec<Step> {
    String::from_utf8_lossy(stdout)
        .split("@@step\n")
        .skip(1)
        .map(|chunk| {
            let (out, rc) = chunk.rsplit_once("@@rc=").expect("step end");
            Step {
                out: out.to_owned(),
                rc: rc.trim().parse().unwrap(),
            }
        })
        .collect()
}

/// Steps run by one shell in a private mount namespace (and, if asked, a fresh network
/// namespace), with the binary as `$B`, the source tree as `$S` and an agent config of the
/// step's own state dir as `$C` (its state dir as `$ST`), so no step touches the machine's
/// mounts, network settings or converge state.
pub struct Namespaces {
    net: bool,
    setup: String,
    env: Vec<(String, std::ffi::OsString)>,
}

impl Namespaces {
    /// A private mount namespace only: stand-ins bound over /proc, /sys or /etc stay inside.
    pub fn mount() -> Namespaces {
        Namespaces {
            net: false,
            setup: "set -u".into(),
            env: Vec::new(),
        }
    }

    /// A fresh network namespace too: per-namespace sysctls and nftables rulesets.
    pub fn net_and_mount() -> Namespaces {
        Namespaces {
            net: true,
            ..Namespaces::mount()
        }
    }

    /// Shell run before the first step (mounts of stand-ins); a failure should `exit 99`.
    pub fn setup(mut self, script: &str) -> Namespaces {
        self.setup = format!("{}; {script}", self.setup);
        self
    }

    /// An environment variable for the setup and the steps.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Namespaces {
        self.env.push((key.into(), value.as_ref().to_owned()));
        self
    }

    /// Runs `setup` then `steps` with `src` as `$S`; panics if the shell itself failed.
    pub fn run(self, src: &std::path::Path, steps: &[&str]) -> Vec<Step> {
        super::tools::require_root();
        let unshare = super::tools::require_tool("unshare");
        let own = super::tools::OwnState::new();
        let mut args = vec!["-m", "--propagation", "private", "--", "sh", "-c"];
        if self.net {
            args.insert(0, "-n");
        }
        let out = std::process::Command::new(unshare)
            .args(args)
            .arg(script(&self.setup, steps))
            .env("B", super::cli::BIN)
            .env("S", src)
            .env("C", own.config())
            .env("ST", own.state_dir())
            .env("NO_COLOR", "1")
            .envs(self.env)
            .output()
            .expect("spawn unshare");
        assert!(out.status.success(), "{}", super::tools::output_text(&out));
        split(&out.stdout)
    }
}
