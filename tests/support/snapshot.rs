//! JSON reports as snapshots: what changes from run to run is redacted here, in one place,
//! so a snapshot holds only what a run decided.

use std::path::Path;

use serde_json::Value;

/// Keys whose values differ on every run: when a run started, how long things took, which
/// run it was.
const VOLATILE_KEYS: &[&str] = &["started", "finished", "duration_ms", "run_id"];

/// `json` (a report, a record, a history) pretty-printed with its volatile fields replaced by
/// `[key]`, every one of `temps` (temp dirs of the test, as `(path, name)`, most specific
/// first) replaced by `[name]` inside strings, and any other temp dir by `[tmp]`; panics if
/// `json` is not JSON. Compare the result with `insta::assert_snapshot!`.
pub fn redacted_json(json: &str, temps: &[(&Path, &str)]) -> String {
    let mut value: Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}):\n{json}"));
    redact(&mut value, temps);
    serde_json::to_string_pretty(&value).expect("a JSON value serializes")
}

fn redact(value: &mut Value, temps: &[(&Path, &str)]) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if VOLATILE_KEYS.contains(&key.as_str()) || key.ends_with("_ms") {
                    *v = Value::String(format!("[{key}]"));
                } else {
                    redact(v, temps);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, temps)),
        Value::String(s) => {
            for (path, name) in temps {
                *s = s.replace(&*path.to_string_lossy(), &format!("[{name}]"));
            }
            *s = other_temp_dirs(s);
        }
        _ => {}
    }
}

/// `text` with every `TMPDIR/.tmpXXXXXX` (a `tempfile` dir) replaced by `[tmp]`.
fn other_temp_dirs(text: &str) -> String {
    let prefix = std::env::temp_dir().join(".tmp").display().to_string();
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        out.push_str(&rest[..at]);
        let after = &rest[at + prefix.len()..];
        let name = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        out.push_str("[tmp]");
        rest = &after[name..];
    }
    out.push_str(rest);
    out
}
