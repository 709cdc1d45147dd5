//! The man pages and shell completions the Debian package ships, generated from the clap
//! definitions: every page renders with `man -l`, and the bash completion loads and completes.

mod support;

use std::path::Path;
use std::process::Command;

use support::converge;

fn generate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = converge(&["generate"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    dir
}

fn man(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (scripts/test-deps installs man-db)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "{}: {stderr}",
        page.display()
    );
    // man renders bold by overstriking when stdout is not a terminal.
    let text = String::from_utf8_lossy(&out.stdout);
    let mut plain = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn every_man_page_renders_and_names_its_flags() {
    let dir = generate();
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    // One page per subcommand that --help lists, and the top page.
    let help = converge(&["--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut expected: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands")
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(|c| format!("converge-{c}.1"))
        .chain(["converge.1".to_owned()])
        .collect();
    expected.sort();
    assert!(expected.contains(&"converge-apply.1".to_owned()), "{help}");
    assert_eq!(pages, expected);
    let top = man(&dir.path().join("converge.1"));
    for section in [
        "NAME",
        "SYNOPSIS",
        "SUBCOMMANDS",
        "EXIT STATUS",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(
            top.contains(&format!("\n{section}\n")),
            "no {section} in:\n{top}"
        );
    }
    assert!(top.contains("converge-apply(1)"), "{top}");
    assert!(top.contains("/etc/converge/agent.toml"), "{top}");
    assert!(
        !top.contains("generate"),
        "the hidden command leaked:\n{top}"
    );
    let apply = man(&dir.path().join("converge-apply.1"));
    assert!(apply.contains("--source <DIR|URL>"), "{apply}");
    assert!(apply.contains("--state-dir <DIR>"), "{apply}");
}

#[test]
fn the_bash_completion_loads_and_completes_subcommands_and_flags() {
    let dir = generate();
    let script = dir.path().join("converge.bash");
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let out = Command::new("bash")
            .arg("--norc")
            .arg("-c")
            .arg(format!(
                "set -e; source '{}'; complete -p converge; COMP_WORDS=({}); COMP_CWORD={}; \
                 COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; \
                 _converge converge \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                script.display(),
                words.join(" "),
                words.len() - 1
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subcommands = complete("converge ap");
    assert!(
        subcommands
            .lines()
            .next()
            .is_some_and(|l| l.ends_with("-F _converge converge")),
        "{subcommands}"
    );
    assert_eq!(subcommands.lines().skip(1).collect::<Vec<_>>(), ["apply"]);
    let flags = complete("converge check --sta");
    assert_eq!(flags.lines().skip(1).collect::<Vec<_>>(), ["--state-dir"]);
}

/// `--version` names the package version when the binary was built for a package
/// (`CONVERGE_PACKAGE_VERSION`, set by packaging/deb/build), the crate's alone otherwise.
#[test]
fn the_version_names_the_package_version_when_built_for_a_package() {
    let out = converge(&["--version"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let crate_version = env!("CARGO_PKG_VERSION");
    let want = match option_env!("CONVERGE_PACKAGE_VERSION").filter(|v| !v.is_empty()) {
        Some(package) => format!("converge {crate_version} (Debian {package})\n"),
        None => format!("converge {crate_version}\n"),
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// GitHub's anchor for a heading: lower case, spaces to hyphens, other punctuation dropped.
fn anchor(title: &str) -> String {
    title
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_readme_contents_list_every_section_in_order() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (mut headings, mut contents) = (Vec::new(), Vec::new());
    let (mut fenced, mut in_contents) = (false, false);
    for line in readme.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(title) = line
            .strip_prefix("## ")
            .map(|t| (0, t))
            .or_else(|| line.strip_prefix("### ").map(|t| (1, t)))
        {
            in_contents = title.1 == "Contents";
            if !in_contents {
                headings.push(format!(
                    "{}- [{}](#{})",
                    "  ".repeat(title.0),
                    title.1,
                    anchor(title.1)
                ));
            }
        } else if in_contents && line.trim_start().starts_with("- [") {
            contents.push(line.to_owned());
        }
    }
    assert!(headings.len() > 40, "{headings:#?}");
    assert_eq!(contents.join("\n"), headings.join("\n"));
}
