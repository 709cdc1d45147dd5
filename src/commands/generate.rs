//! `converge generate DIR`: the man page and shell completions, from the same clap
//! definitions that parse the command line, so they cannot drift from the flags.

use std::path::Path;

use anyhow::anyhow;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, GenerateArgs};

/// File names, as the Debian package installs them.
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "converge.bash"),
    (Shell::Zsh, "_converge"),
    (Shell::Fish, "converge.fish"),
];

/// Writes `converge.1`, a `converge-SUBCOMMAND.1` per subcommand and one completion script
/// per shell into the directory.
pub fn run(args: &GenerateArgs) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| anyhow!("cannot create {}: {e}", args.dir.display()))?;
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    write(&args.dir.join("converge.1"), &top_page(cli.clone())?)?;
    // One page per subcommand, git-style (`man converge-apply`), as converge.1 refers to them.
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("converge-{}", sub.get_name());
        let page = man_page(sub.clone().name(name.clone()).display_name(name.clone()))?;
        write(&args.dir.join(format!("{name}.1")), &page)?;
    }
    for (shell, name) in COMPLETIONS {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "converge", &mut script);
        write(&args.dir.join(name), &script)?;
    }
    Ok(0)
}

/// The sections of converge(1) that the flags do not say: exit codes, files, where to start.
fn extra_sections() -> roff::Roff {
    use roff::{bold, roman};
    let mut r = roff::Roff::new();
    r.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        ("0", "in sync"),
        ("2", "changes made (apply) or pending (check)"),
        ("4", "failures"),
        ("6", "changes and failures"),
        (
            "1",
            "could not run at all (bad input, no source, lock held); nothing was changed",
        ),
    ] {
        r.control("TP", [])
            .text([bold(code)])
            .text([roman(meaning)]);
    }
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            converge::agent::config::DEFAULT_PATH,
            "the agent config: source, roles, trusted keys, vars",
        ),
        (
            "/etc/converge/keys/",
            "trusted public keys written by converge bootstrap",
        ),
        (
            "/var/lib/converge/last-run.json",
            "the record of the last run",
        ),
        (
            "/var/lib/converge/last-check.json",
            "the record of the last check (a check never overwrites an apply's)",
        ),
        (
            "/var/lib/converge/metrics/converge.prom",
            "the Prometheus textfile of the last apply (converge-check.prom: of the last check)",
        ),
        (
            "converge.service, converge.timer",
            "the scheduled run; its log: journalctl -u converge",
        ),
    ] {
        r.control("TP", []).text([bold(path)]).text([roman(what)]);
    }
    r.control("SH", ["EXAMPLES"]);
    r.text([roman(
        "Set up a fresh host against a signed bundle, and have it converge every 30 minutes:",
    )]);
    r.control("PP", []).control("RS", ["4"]).text([bold(
        "converge bootstrap --source https://config.example.com/bundle/ --key /root/converge.pub",
    )]);
    r.control("RE", []);
    r
}

fn top_page(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    man.render_subcommands_section(&mut page)?;
    extra_sections().to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

fn man_page(cmd: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .map_err(|e| anyhow!("cannot render the man page: {e}"))?;
    Ok(page)
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}
