//! Tool definitions and tool choice in both shapes.

use serde_json::{Map, Value, json};

use super::super::TranslateError;
use super::super::json::{as_object, field, get, opt_str, req_str, wrong_type};

/// OpenAI `tools` → Anthropic `tools`.
pub(super) fn openai_tools(tools: &[Value], path: &str) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let obj = as_object(tool, || p.clone())?;
        let kind = opt_str(obj, "type", &p)?.unwrap_or("function");
        if kind != "function" {
            return Err(TranslateError::Unsupported {
                field: field(&p, "type"),
                what: format!("tool type `{kind}`"),
                target: "Anthropic",
            });
        }
        let fp = field(&p, "function");
        let func = as_object(
            get(obj, "function").ok_or_else(|| TranslateError::Missing { field: fp.clone() })?,
            || fp.clone(),
        )?;
        let mut t = Map::new();
        t.insert("name".into(), req_str(func, "name", &fp)?.into());
        if let Some(d) = opt_str(func, "description", &fp)? {
            t.insert("description".into(), d.into());
        }
        // Anthropic requires a schema; OpenAI treats a missing one as "no parameters".
        let schema = match get(func, "parameters") {
            Some(Value::Object(s)) => Value::Object(s.clone()),
            Some(_) => return Err(wrong_type(field(&fp, "parameters"), "an object")),
            None => json!({"type": "object", "properties": {}}),
        };
        t.insert("input_schema".into(), schema);
        // Callers targeting Anthropic through an OpenAI client put cache breakpoints here.
        if let Some(cc) = get(obj, "cache_control") {
            t.insert("cache_control".into(), cc.clone());
        }
        out.push(Value::Object(t));
    }
    Ok(out)
}

/// OpenAI `tool_choice` + `parallel_tool_calls` → Anthropic `tool_choice`.
pub(super) fn openai_tool_choice(
    choice: Option<&Value>,
    parallel: Option<bool>,
    path: &str,
) -> Result<Option<Value>, TranslateError> {
    let mut out = match choice {
        None => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => {
                return Err(TranslateError::Invalid {
                    field: path.to_owned(),
                    reason: format!("unknown tool_choice `{other}`"),
                });
            }
        }),
        Some(Value::Object(o)) => {
            let name = match get(o, "function") {
                Some(Value::Object(f)) => req_str(f, "name", &field(path, "function"))?,
                _ => {
                    return Err(TranslateError::Missing {
                        field: field(path, "function.name"),
                    });
                }
            };
            Some(json!({"type": "tool", "name": name}))
        }
        Some(_) => return Err(wrong_type(path.to_owned(), "a string or an object")),
    };
    if parallel == Some(false) {
        let choice = out.get_or_insert_with(|| json!({"type": "auto"}));
        // `none` has no such flag; there are no tool calls to serialize then anyway.
        if choice.get("type").and_then(Value::as_str) != Some("none")
            && let Some(o) = choice.as_object_mut()
        {
            o.insert("disable_parallel_tool_use".into(), true.into());
        }
    }
    Ok(out)
}

/// Anthropic `tools` → OpenAI `tools`. Server tools (web search, bash, …) have no OpenAI form.
pub(super) fn anthropic_tools(tools: &[Value], path: &str) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let obj = as_object(tool, || p.clone())?;
        if let Some(kind) = opt_str(obj, "type", &p)?.filter(|k| *k != "custom") {
            return Err(TranslateError::Unsupported {
                field: field(&p, "type"),
                what: format!("tool type `{kind}`"),
                target: "OpenAI",
            });
        }
        let mut f = Map::new();
        f.insert("name".into(), req_str(obj, "name", &p)?.into());
        if let Some(d) = opt_str(obj, "description", &p)? {
            f.insert("description".into(), d.into());
        }
        match get(obj, "input_schema") {
            Some(Value::Object(s)) => f.insert("parameters".into(), Value::Object(s.clone())),
            Some(_) => return Err(wrong_type(field(&p, "input_schema"), "an object")),
            None => {
                return Err(TranslateError::Missing {
                    field: field(&p, "input_schema"),
                });
            }
        };
        out.push(json!({"type": "function", "function": f}));
    }
    Ok(out)
}

/// Anthropic `tool_choice` → OpenAI (`tool_choice`, `parallel_tool_calls`).
pub(super) fn anthropic_tool_choice(
    choice: &Value,
    path: &str,
) -> Result<(Value, Option<bool>), TranslateError> {
    let obj = as_object(choice, || path.to_owned())?;
    let oa = match req_str(obj, "type", path)? {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => json!({"type": "function", "function": {"name": req_str(obj, "name", path)?}}),
        other => {
            return Err(TranslateError::Invalid {
                field: field(path, "type"),
                reason: format!("unknown tool_choice type `{other}`"),
            });
        }
    };
    let parallel = match get(obj, "disable_parallel_tool_use") {
        None => None,
        Some(Value::Bool(b)) => Some(!b),
        Some(_) => {
            return Err(wrong_type(
                field(path, "disable_parallel_tool_use"),
                "a boolean",
            ));
        }
    };
    Ok((oa, parallel))
}
