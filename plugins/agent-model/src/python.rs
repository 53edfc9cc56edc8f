//! Rules that turn schema names and values into valid Python.

/// Python's reserved words (3.11), plus the soft keywords that break as field names.
pub(crate) const PY_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
    "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
    "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// Attributes of pydantic's `BaseModel` that a field must not shadow.
pub(crate) const PYDANTIC_RESERVED: &[&str] = &[
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

/// Names a generated `models.py` imports, which a class must not shadow.
pub(crate) const MODEL_IMPORTS: &[&str] = &["Any", "BaseModel", "ConfigDict", "Field", "Literal", "Optional"];

/// A Python class name: [`py_ident`] of the name with its first letter upper-cased, and a `_`
/// suffix when it would shadow a name `models.py` imports (`Field` → `Field_`).
pub fn py_class(name: &str) -> String {
    let ident = py_ident(name);
    let mut chars = ident.chars();
    let mut class = match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => ident,
    };
    if MODEL_IMPORTS.contains(&class.as_str()) {
        class.push('_');
    }
    class
}

/// `SCREAMING_SNAKE_CASE` of [`py_ident`], for environment variables and constants.
pub fn py_const(name: &str) -> String {
    py_ident(name).trim_end_matches('_').to_ascii_uppercase()
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
        other => {
            let builtins = ["string", "integer", "number", "boolean", "datetime", "any"];
            let hint = crate::rules::suggest(other, builtins.into_iter().chain(known.iter().map(String::as_str)));
            let hint = if hint.is_empty() { " (use a builtin or one of the agent's types)".to_owned() } else { hint };
            return Err(format!("unknown type `{other}`{hint}"));
        }
    })
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
        assert_eq!(py_class("field"), "Field_");
        assert_eq!(py_const("my-field"), "MY_FIELD");
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
