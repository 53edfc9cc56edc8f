//! A YAML document as a tree of nodes that remember where they were written, and its conversion to
//! plain JSON plus a [`Provenance`] map (JSON Pointer → file, line, column).

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::provenance::{Origin, Provenance, escape_pointer};

/// One YAML node and its position (1-based line and column; 0 when unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: NodeValue,
    /// Line of the node.
    pub line: u64,
    /// Column of the node.
    pub column: u64,
}

/// The value of a [`Node`]. Mapping keys are strings; their order is the file's order.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `null` or `~`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping.
    Map(Vec<(Spanned<String>, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<NodeValue>::deserialize(deserializer)?;
        Ok(Node { value: spanned.value, line: spanned.referenced.line(), column: spanned.referenced.column() })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        serde_json::Number::from_f64(v)
            .map(NodeValue::Number)
            .ok_or_else(|| E::custom(format!("`{v}` is not a finite number; JSON has no NaN or infinity")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<(Spanned<String>, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(NodeValue::Map(entries))
    }
}

impl Node {
    /// The node as JSON, recording the origin of every value (keyed by JSON Pointer) in `provenance`.
    pub fn to_json(&self, file: &Path, pointer: &str, provenance: &mut Provenance) -> serde_json::Value {
        provenance.insert(pointer.to_owned(), Origin::new(file, self.line, self.column));
        match &self.value {
            NodeValue::Null => serde_json::Value::Null,
            NodeValue::Bool(b) => serde_json::Value::Bool(*b),
            NodeValue::Number(n) => serde_json::Value::Number(n.clone()),
            NodeValue::String(s) => serde_json::Value::String(s.clone()),
            NodeValue::Seq(items) => serde_json::Value::Array(
                items.iter().enumerate().map(|(i, n)| n.to_json(file, &format!("{pointer}/{i}"), provenance)).collect(),
            ),
            NodeValue::Map(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries {
                    let child = format!("{pointer}/{}", escape_pointer(&k.value));
                    map.insert(k.value.clone(), v.to_json(file, &child, provenance));
                }
                serde_json::Value::Object(map)
            }
        }
    }
}
