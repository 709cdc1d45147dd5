//! `converge facts`.

use crate::cli::FactsArgs;
use converge::facts::Facts;

/// Prints facts as `key = value` lines, or JSON.
pub fn run(args: &FactsArgs) -> anyhow::Result<i32> {
    let facts = serde_json::to_value(Facts::gather(&args.root)?)?;
    if args.json {
        showln!("{}", serde_json::to_string_pretty(&facts)?);
    } else {
        let mut lines = Vec::new();
        flatten("facts", &facts, &mut lines);
        for line in lines {
            showln!("{line}");
        }
    }
    Ok(0)
}

/// `facts.memory.total_mb = 2048`: the path a template uses, and the value.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => out.push(format!("{prefix} = {other}")),
    }
}
