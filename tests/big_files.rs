//! A file far past what is diffed: compared, summarised and written in pieces, with the same
//! record in check and apply. Its memory is measured by `benches/big-file.sh`.

mod support;

use sha2::{Digest, Sha256};
use support::Project;

/// 24 MB of 40-byte lines: 24 times what is diffed, hundreds of read chunks.
fn desired() -> String {
    (0..600_000)
        .map(|i| {
            format!(
                "host-{i:07} 10.{:03}.{:03}.{:03} allow\n",
                i / 65536 % 256,
                i / 256 % 256,
                i % 256
            )
        })
        .collect()
}

fn digest(bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({ "sha256": hex::encode(Sha256::digest(bytes)), "size": bytes.len() })
}

fn content_change(stdout: &str) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
    let file = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "file:/srv/hosts.allow")
        .unwrap();
    file["change"]["content"].clone()
}

#[test]
fn a_big_file_is_summarised_alike_in_check_and_apply_and_written_whole() {
    let desired = desired();
    let mut lines: Vec<String> = desired.lines().map(|l| format!("{l}\n")).collect();
    // Lines shifted by one at the top, two changed in the middle, the last one gone, and a
    // final line without its newline: 4 removed, 3 added.
    lines.insert(0, "# edited by hand\n".into());
    lines[300_000] = "host-changed\n".into();
    lines[300_001] = "host-changed-too\n".into();
    lines.pop();
    lines.push("trailing".into());
    let live: String = lines.concat();
    let p = Project::new();
    p.file(
        "roles/big.toml",
        "[[file]]\npath = \"/srv/hosts.allow\"\nsource = \"hosts.allow\"\n",
    )
    .file("files/hosts.allow", &desired)
    .root_file("/srv/hosts.allow", &live);

    let check = p.converge("check", &["big"], &["--format", "json"]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    let expected = serde_json::json!({
        "before": digest(live.as_bytes()),
        "after": digest(desired.as_bytes()),
        "summary": {
            "reason": format!("{} bytes, more than 1048576 to diff", desired.len().max(live.len())),
            "lines_removed": 4,
            "lines_added": 3,
        },
    });
    assert_eq!(content_change(&check.stdout), expected);
    assert_eq!(
        std::fs::read_to_string(p.at("/srv/hosts.allow")).unwrap(),
        live
    );

    let apply = p.converge("apply", &["big"], &["--format", "json"]);
    assert_eq!(apply.code, 2, "{}", apply.stderr);
    assert_eq!(content_change(&apply.stdout), expected);
    let written = std::fs::read(p.at("/srv/hosts.allow")).unwrap();
    assert!(
        written == desired.as_bytes(),
        "the written file differs from the source"
    );

    let again = p.converge("check", &["big"], &[]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
}

#[test]
fn a_big_file_that_is_not_text_changes_without_a_summary() {
    let mut desired = desired().into_bytes();
    desired[12_000_000] = 0;
    let p = Project::new();
    p.file(
        "roles/big.toml",
        "[[file]]\npath = \"/blob\"\nsource = \"blob\"\n",
    );
    std::fs::create_dir_all(p.src().join("files")).unwrap();
    std::fs::write(p.src().join("files/blob"), &desired).unwrap();
    let check = p.converge("check", &["big"], &["--format", "json"]);
    assert_eq!(check.code, 2, "{}", check.stderr);
    let report: serde_json::Value = serde_json::from_str(&check.stdout).unwrap();
    let content = &report["resources"][0]["change"]["content"];
    assert_eq!(
        *content,
        serde_json::json!({ "before": null, "after": digest(&desired) })
    );
    assert_eq!(p.converge("apply", &["big"], &[]).code, 2);
    assert!(std::fs::read(p.at("/blob")).unwrap() == desired);
}
