//! The rules an Agent schema must follow beyond its JSON Schema, each with a stable id. The
//! generators stop at a broken one; the Agent validator (`plugins/agent-validator`) reports them
//! all before any generator runs. Both raise them from the same code ([`crate::view`]), with the
//! rule id in front of the message (`[agent/unknown-type] ...`), which the host shows and puts in
//! SARIF output.

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Stable id, `agent/...`.
    pub id: &'static str,
    /// What it requires, one line.
    pub summary: &'static str,
}

/// The input is not an Agent `spec` (only when the kind's JSON Schema was bypassed).
pub const SPEC: Rule = Rule { id: "agent/spec", summary: "The input is an Agent `spec` as the kind describes it." };
/// A field, a capability's input or output names a type that is neither a builtin nor declared.
pub const UNKNOWN_TYPE: Rule = Rule {
    id: "agent/unknown-type",
    summary: "Every type a field or a capability names is a builtin (`string`, `integer`, `number`, `boolean`, `datetime`, `any`, `list[T]`, `map[T]`) or one of the agent's `types`.",
};
/// A capability raises an error the agent does not declare.
pub const UNDECLARED_ERROR: Rule = Rule {
    id: "agent/undeclared-error",
    summary: "Every error a capability lists is declared in the agent's `errors`.",
};
/// Two names become one Python identifier.
pub const NAME_COLLISION: Rule = Rule {
    id: "agent/name-collision",
    summary: "Names of one list (types, fields of a type, errors, capabilities, memory stores, sub-agents, anomalies, settings) stay distinct once made valid Python (`my-field` and `my_field` are one name).",
};
/// A name the generated code defines itself.
pub const RESERVED_NAME: Rule = Rule {
    id: "agent/reserved-name",
    summary: "An error is not named like a class the generated errors module defines (`AgentError`, `ErrorResponse`).",
};
/// A type contains itself through required fields.
pub const SELF_CONTAINING_TYPE: Rule = Rule {
    id: "agent/self-containing-type",
    summary: "No type contains itself through required fields: a value of it could never be built.",
};
/// A sub-agent runs an agent the project does not have.
pub const UNKNOWN_AGENT: Rule = Rule {
    id: "agent/unknown-agent",
    summary: "Every sub-agent runs an agent of the same project (checked by the validator, which sees the project's agent names).",
};
/// A setting's default does not have its type.
pub const SETTING_DEFAULT_TYPE: Rule =
    Rule { id: "agent/setting-default-type", summary: "A setting's default is a value of the setting's type." };
/// A setting's allowed values are wrong, or its default is not one of them.
pub const SETTING_VALUES: Rule = Rule {
    id: "agent/setting-values",
    summary: "A setting's allowed values (`enum`) are strings or integers of its type, a secret lists none, and its default is one of them.",
};
/// A memory option that its backend does not have, or a vector store without its dimensions.
pub const MEMORY_OPTION: Rule = Rule {
    id: "agent/memory-option",
    summary: "`ttl_seconds` is for `redis` stores only, and `dimensions` is given for `vector` stores and only for them.",
};

/// An anomaly's action or rule that cannot work.
pub const ANOMALY_RULE: Rule = Rule {
    id: "agent/anomaly-rule",
    summary: "An anomaly with `action: spawn` names a declared sub-agent (and only such an anomaly names one), only an anomaly with `action: agent` names a handler agent (whose name, given or derived, is a schema name), and a `when` rule has one of `above` and `below`, or none (then the SLO of its metric).",
};

/// Every rule, in the order the documentation lists them.
pub const ALL: [Rule; 11] = [
    UNKNOWN_TYPE,
    UNDECLARED_ERROR,
    NAME_COLLISION,
    RESERVED_NAME,
    SELF_CONTAINING_TYPE,
    UNKNOWN_AGENT,
    SETTING_DEFAULT_TYPE,
    SETTING_VALUES,
    MEMORY_OPTION,
    ANOMALY_RULE,
    SPEC,
];

/// ` (did you mean `x`?)` for the closest candidate, when one is close enough; else empty. The
/// same measure the host uses for its own suggestions (Jaro-Winkler above 0.8).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// `a string`, `an integer`, ... for a JSON value.
pub fn json_type_phrase(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        serde_json::Value::Number(_) => "a number with a fraction",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_in_the_agent_namespace() {
        let mut ids: Vec<&str> = ALL.iter().map(|r| r.id).collect();
        assert!(ids.iter().all(|id| id.starts_with("agent/")));
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), ALL.len());
    }

    #[test]
    fn suggestions_name_the_closest_candidate() {
        assert_eq!(suggest("numbr", ["string", "number", "integer"]), " (did you mean `number`?)");
        assert_eq!(suggest("zzz", ["string", "number"]), "");
    }
}
