//! The `Agent` kind's `spec` as plain Rust types, and the rules that turn its names into valid
//! Python. Every reference extractor reads agents through this crate, so they agree on one model.

use serde::{Deserialize, Serialize};

/// `spec` of an `Agent` schema (see `schemas/kinds/agent.schema.json`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AgentSpec {
    /// What the agent does, one paragraph.
    pub description: String,
    /// Data models the agent exchanges.
    #[serde(default)]
    pub types: Vec<TypeDef>,
    /// Operations the agent offers.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Everything else the reference extractors of later versions read (memory, SLOs, ...).
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// A named record type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TypeDef {
    /// Type name, used as the class name (`PascalCase` recommended).
    pub name: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// The record's fields, in order.
    #[serde(default)]
    pub fields: Vec<Field>,
}

/// One field of a record type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Field name as it appears on the wire; may be a Python keyword or contain `-`.
    pub name: String,
    /// Type expression: `string`, `integer`, `number`, `boolean`, `datetime`, `any`,
    /// `list[T]`, `map[T]` (string keys) or the name of a type of the same agent.
    #[serde(rename = "type")]
    pub ty: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// Whether the field may be absent (`None`).
    #[serde(default)]
    pub optional: bool,
    /// Default value, as JSON.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// An operation of the agent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capability {
    /// Operation name (`snake_case` recommended).
    pub name: String,
    /// Documentation.
    #[serde(default)]
    pub description: String,
    /// Name of the input type.
    pub input: String,
    /// Name of the output type.
    pub output: String,
    /// Names of the errors it may raise.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// Python's reserved words (3.11), plus the soft keywords that break as field names.
const PY_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// Attributes of pydantic's `BaseModel` that a field must not shadow.
const PYDANTIC_RESERVED: &[&str] = &[
    "construct",
    "copy",
    "dict",
    "fields",
    "json",
    "parse_file",
    "parse_obj",
    "parse_raw",
    "schema",
    "schema_json",
    "update_forward_refs",
    "validate",
];

/// Turns any name into a valid, public Python identifier: characters that cannot appear in one
/// become `_`, leading underscores are dropped (pydantic treats `_x` as private), a leading digit
/// gets an `f_` prefix, and keywords, `model_*` names and `BaseModel` attributes get a `_` suffix.
/// `my-field` → `my_field`, `class` → `class_`, `9lives` → `f_9lives`, `json` → `json_`.
pub fn py_ident(name: &str) -> String {
    let replaced: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let mut out = replaced.trim_start_matches('_').to_owned();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "f_");
    }
    if PY_KEYWORDS.contains(&out.as_str()) || PYDANTIC_RESERVED.contains(&out.as_str()) || out.starts_with("model_") {
        out.push('_');
    }
    out
}

/// A Python package name for an agent name: lower-case [`py_ident`].
pub fn py_package(name: &str) -> String {
    py_ident(&name.to_ascii_lowercase())
}

/// A Python class name: [`py_ident`] of the name with its first letter upper-cased.
pub fn py_class(name: &str) -> String {
    let ident = py_ident(name);
    let mut chars = ident.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => ident,
    }
}

/// A double-quoted Python string literal holding exactly `s`.
pub fn py_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text safe inside a Python triple-quoted docstring.
pub fn py_doc(s: &str) -> String {
    s.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"")
}

/// A Python literal for a JSON value (`null` → `None`, `true` → `True`, objects → dicts).
pub fn py_literal(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "None".to_owned(),
        serde_json::Value::Bool(true) => "True".to_owned(),
        serde_json::Value::Bool(false) => "False".to_owned(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => py_str(s),
        serde_json::Value::Array(items) => {
            format!("[{}]", items.iter().map(py_literal).collect::<Vec<_>>().join(", "))
        }
        serde_json::Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", py_str(k), py_literal(v))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The Python type annotation for a field type expression.
///
/// # Errors
/// A message naming the type when it is neither a builtin nor one of `known` types.
pub fn py_type(expr: &str, known: &[String]) -> Result<String, String> {
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix("list[").and_then(|r| r.strip_suffix(']')) {
        return Ok(format!("list[{}]", py_type(inner, known)?));
    }
    if let Some(inner) = expr.strip_prefix("map[").and_then(|r| r.strip_suffix(']')) {
        return Ok(format!("dict[str, {}]", py_type(inner, known)?));
    }
    Ok(match expr {
        "string" => "str".to_owned(),
        "integer" => "int".to_owned(),
        "number" => "float".to_owned(),
        "boolean" => "bool".to_owned(),
        "datetime" => "datetime".to_owned(),
        "any" => "Any".to_owned(),
        name if known.iter().any(|k| k == name) => py_class(name),
        other => return Err(format!("unknown type `{other}`; use a builtin or one of the agent's types")),
    })
}

/// A minijinja environment with the Python filters registered: `py_ident`, `py_class`, `py_str`,
/// `py_doc`, `py_literal`, `md` (escapes Markdown table cells).
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    match minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        Ok(syntax) => env.set_syntax(syntax),
        // The builder only fails for conflicting custom delimiters, which are not set here.
        Err(e) => unreachable!("default delimiters are valid: {e}"),
    }
    env.add_filter("py_ident", |s: String| py_ident(&s));
    env.add_filter("py_class", |s: String| py_class(&s));
    env.add_filter("py_str", |s: String| py_str(&s));
    env.add_filter("py_doc", |s: String| py_doc(&s));
    env.add_filter("md", |s: String| s.replace('|', "\\|").replace('\n', " "));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_valid_python() {
        assert_eq!(py_ident("class"), "class_");
        assert_eq!(py_ident("from"), "from_");
        assert_eq!(py_ident("my-field"), "my_field");
        assert_eq!(py_ident("9lives"), "f_9lives");
        assert_eq!(py_ident(""), "f_");
        assert_eq!(py_ident("\"quoted\" note"), "quoted__note");
        assert_eq!(py_ident("json"), "json_");
        assert_eq!(py_ident("model_name"), "model_name_");
        assert_eq!(py_class("task"), "Task");
    }

    #[test]
    fn strings_escape_quotes_and_control_characters() {
        assert_eq!(py_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\x01\"");
    }

    #[test]
    fn types_map_to_annotations() {
        let known = vec!["Task".to_owned()];
        assert_eq!(py_type("list[map[Task]]", &known).as_deref(), Ok("list[dict[str, Task]]"));
        assert!(py_type("Nope", &known).is_err());
    }
}
