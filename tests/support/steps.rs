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
