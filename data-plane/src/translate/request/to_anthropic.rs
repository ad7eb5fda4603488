//! OpenAI Chat Completions request → Anthropic Messages request.

use serde_json::{Map, Value, json};

use super::super::TranslateError;
use super::super::json::{
    as_object, field, get, opt_array, opt_bool, opt_number, opt_positive_u32, opt_str, req_str,
    wrong_type,
};
use super::content::{Parts, openai_content_to_blocks};
use super::tools::{openai_tool_choice, openai_tools};
use super::turns::{Role, Turns};

/// Translates an OpenAI Chat Completions body into an Anthropic Messages body.
///
/// `upstream_model` replaces `model`; `default_max_tokens` fills Anthropic's required
/// `max_tokens` when the caller set neither `max_tokens` nor `max_completion_tokens`.
/// System and developer messages (Keel's injected ones included) join the system prompt in
/// order. Fields with no Anthropic counterpart (`n`, `logprobs`, `presence_penalty`,
/// `response_format`, …) are dropped.
pub fn openai_to_anthropic_request(
    body: &Map<String, Value>,
    upstream_model: &str,
    default_max_tokens: u32,
) -> Result<Map<String, Value>, TranslateError> {
    let messages = opt_array(body, "messages", "")?.ok_or_else(|| TranslateError::Missing {
        field: "messages".into(),
    })?;
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (i, msg) in messages.iter().enumerate() {
        let path = format!("messages[{i}]");
        let m = as_object(msg, || path.clone())?;
        let content_path = field(&path, "content");
        match req_str(m, "role", &path)? {
            // Anthropic has one top-level system prompt; in-conversation system messages
            // join it in order, which loses only their position.
            "system" | "developer" => system.extend(openai_content_to_blocks(
                get(m, "content"),
                Parts::Text,
                &content_path,
            )?),
            "user" => turns.push(
                Role::User,
                openai_content_to_blocks(get(m, "content"), Parts::User, &content_path)?,
            ),
            "assistant" => turns.push(Role::Assistant, assistant_blocks(m, &path)?),
            "tool" => turns.push_tool_result(tool_result(m, &path)?),
            "function" => {
                return Err(TranslateError::Unsupported {
                    field: field(&path, "role"),
                    what: "the deprecated `function` role (use `tool`)".into(),
                    target: "Anthropic",
                });
            }
            other => {
                return Err(TranslateError::Invalid {
                    field: field(&path, "role"),
                    reason: format!("unknown role `{other}`"),
                });
            }
        }
    }
    if turns.is_empty() {
        return Err(TranslateError::Invalid {
            field: "messages".into(),
            reason: "needs at least one non-system message with content".into(),
        });
    }
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    let max_tokens = match opt_positive_u32(body, "max_completion_tokens", "")? {
        Some(n) => n,
        None => opt_positive_u32(body, "max_tokens", "")?.unwrap_or(default_max_tokens),
    };
    out.insert("max_tokens".into(), max_tokens.into());
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(turns.into_messages()));
    copy_sampling(body, &mut out)?;
    if let Some(stop) = stop_sequences(body)? {
        out.insert("stop_sequences".into(), stop);
    }
    if let Some(stream) = opt_bool(body, "stream", "")? {
        out.insert("stream".into(), stream.into());
    }
    if let Some(user) = opt_str(body, "user", "")? {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    copy_tools(body, &mut out)?;
    Ok(out)
}

/// Assistant text (or refusal) first, then one `tool_use` block per tool call, the order in
/// which Anthropic itself emits them.
fn assistant_blocks(m: &Map<String, Value>, path: &str) -> Result<Vec<Value>, TranslateError> {
    let mut blocks =
        openai_content_to_blocks(get(m, "content"), Parts::Assistant, &field(path, "content"))?;
    if let Some(refusal) = opt_str(m, "refusal", path)?.filter(|r| !r.is_empty())
        && blocks.is_empty()
    {
        blocks.push(json!({"type": "text", "text": refusal}));
    }
    if get(m, "function_call").is_some() {
        return Err(TranslateError::Unsupported {
            field: field(path, "function_call"),
            what: "the deprecated `function_call` (use `tool_calls`)".into(),
            target: "Anthropic",
        });
    }
    let calls_path = field(path, "tool_calls");
    for (i, call) in opt_array(m, "tool_calls", path)?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("{calls_path}[{i}]");
        let c = as_object(call, || p.clone())?;
        let fp = field(&p, "function");
        let func = as_object(
            get(c, "function").ok_or_else(|| TranslateError::Missing { field: fp.clone() })?,
            || fp.clone(),
        )?;
        blocks.push(json!({
            "type": "tool_use",
            "id": req_str(c, "id", &p)?,
            "name": req_str(func, "name", &fp)?,
            "input": tool_input(get(func, "arguments"), &field(&fp, "arguments"))?,
        }));
    }
    Ok(blocks)
}

/// OpenAI arguments are a JSON string; Anthropic wants the object itself.
fn tool_input(arguments: Option<&Value>, path: &str) -> Result<Value, TranslateError> {
    let parsed = match arguments {
        None => return Ok(json!({})),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(json!({})),
        Some(Value::String(s)) => {
            serde_json::from_str::<Value>(s).map_err(|source| TranslateError::BadJson {
                field: path.to_owned(),
                source,
            })?
        }
        // Some clients send the object itself; it is already what Anthropic wants.
        Some(other) => other.clone(),
    };
    if parsed.is_object() {
        Ok(parsed)
    } else {
        Err(wrong_type(path.to_owned(), "a JSON object"))
    }
}

fn tool_result(m: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let id = req_str(m, "tool_call_id", path)?;
    let content =
        openai_content_to_blocks(get(m, "content"), Parts::Text, &field(path, "content"))?;
    let mut block = Map::new();
    block.insert("type".into(), "tool_result".into());
    block.insert("tool_use_id".into(), id.into());
    // An empty result is legal in Anthropic only without a `content` field.
    if !content.is_empty() {
        block.insert("content".into(), Value::Array(content));
    }
    Ok(Value::Object(block))
}

fn copy_sampling(
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    if let Some(t) = opt_number(body, "temperature", "")? {
        // OpenAI accepts 0..=2, Anthropic 0..=1: clamp instead of failing a valid caller.
        out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = opt_number(body, "top_p", "")? {
        out.insert("top_p".into(), json!(p));
    }
    Ok(())
}

/// `stop` (string or array) → `stop_sequences`, without empty strings Anthropic would reject.
fn stop_sequences(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let seqs: Vec<&str> = match get(body, "stop") {
        None => return Ok(None),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| wrong_type(format!("stop[{i}]"), "a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong_type("stop".into(), "a string or an array of strings")),
    };
    let seqs: Vec<Value> = seqs
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(Value::from)
        .collect();
    Ok((!seqs.is_empty()).then_some(Value::Array(seqs)))
}

fn copy_tools(
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let tools = openai_tools(
        opt_array(body, "tools", "")?.map_or(&[][..], Vec::as_slice),
        "tools",
    )?;
    // Anthropic rejects a tool_choice without tools, and OpenAI treats that combination as
    // "no tools" anyway.
    if tools.is_empty() {
        return Ok(());
    }
    let parallel = opt_bool(body, "parallel_tool_calls", "")?;
    if let Some(choice) = openai_tool_choice(get(body, "tool_choice"), parallel, "tool_choice")? {
        out.insert("tool_choice".into(), choice);
    }
    out.insert("tools".into(), Value::Array(tools));
    Ok(())
}

#[cfg(test)]
mod tests;
