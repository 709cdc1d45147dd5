//! Template variables: TOML values turned into JSON for Handlebars, merged by precedence.

use serde_json::{Map, Value};

/// Converts a TOML value to the JSON value templates see (datetimes become strings).
pub fn to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        toml::Value::Table(t) => Value::Object(table_to_json(t)),
    }
}

/// Converts a TOML table to a JSON object.
pub fn table_to_json(table: &toml::Table) -> Map<String, Value> {
    table.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()
}

/// Merges `over` into `base`: tables merge key by key, anything else is replaced.
pub fn merge(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// An error in a `key=value` override.
#[derive(Debug, thiserror::Error)]
#[error("invalid variable override '{0}': expected KEY=VALUE, e.g. worker_connections=4096")]
pub struct AssignmentError(String);

/// Parses `key=value` (dotted keys nest) into a one-entry object. The value is read as a TOML
/// value when it is one (`4096`, `true`, `["a","b"]`), otherwise it is taken as a plain string.
pub fn parse_assignment(text: &str) -> Result<Map<String, Value>, AssignmentError> {
    let (key, raw) = text
        .split_once('=')
        .ok_or_else(|| AssignmentError(text.to_owned()))?;
    let key = key.trim();
    let valid_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !key.split('.').all(valid_key) {
        return Err(AssignmentError(text.to_owned()));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|t| t.get("v").map(to_json))
        .unwrap_or_else(|| Value::String(raw.to_owned()));
    let mut value = value;
    for part in key.rsplit('.') {
        let mut m = Map::new();
        m.insert(part.to_owned(), value);
        value = Value::Object(m);
    }
    match value {
        Value::Object(m) => Ok(m),
        _ => unreachable!("a key always wraps the value in an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assignment_parses_typed_values_and_dotted_keys() {
        assert_eq!(
            Value::Object(parse_assignment("port=8080").unwrap()),
            json!({"port": 8080})
        );
        assert_eq!(
            Value::Object(parse_assignment("nginx.user=www-data").unwrap()),
            json!({"nginx": {"user": "www-data"}})
        );
        assert_eq!(
            Value::Object(parse_assignment("hosts=[\"a\",\"b\"]").unwrap()),
            json!({"hosts": ["a", "b"]})
        );
        assert!(parse_assignment("novalue").is_err());
        assert!(parse_assignment("=x").is_err());
    }

    #[test]
    fn merge_is_deep_for_tables_and_replaces_the_rest() {
        let mut base = json!({"a": {"x": 1, "y": 2}, "b": [1]});
        let over = json!({"a": {"y": 3}, "b": [2]});
        merge(base.as_object_mut().unwrap(), over.as_object().unwrap());
        assert_eq!(base, json!({"a": {"x": 1, "y": 3}, "b": [2]}));
    }
}
