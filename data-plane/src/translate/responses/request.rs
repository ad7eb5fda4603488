//! OpenAI Responses request → OpenAI Chat Completions request. An Anthropic
//! target gets this Chat Completions body translated once more (the
//! Chat → Anthropic translator already handles tool results, roles and images).

use serde_json::{Map, Value, json};

use super::super::TranslateError;
use super::super::json::{
    as_object, field, get, opt_array, opt_bool, opt_number, opt_positive_u32, opt_str, req_str,
    wrong_type,
};

/// Input items that record what a hosted tool or the model's hidden reasoning
/// did: a Chat Completions model has no use for them, so they are skipped.
const SKIPPED_ITEMS: &[&str] = &[
    "reasoning",
    "web_search_call",
    "file_search_call",
    "image_generation_call",
    "code_interpreter_call",
];

/// Translates a Responses body into a Chat Completions body for `upstream_model`.
///
/// `instructions` becomes the first system message, `developer` messages become system
/// messages, `function_call` items become the preceding assistant message's `tool_calls`
/// and `function_call_output` items become `tool` messages. Reasoning items and hosted-tool
/// records are skipped; hosted tools (web search, file search, …) are dropped from `tools`
/// because only the Responses API can run them. A streamed request asks for the usage chunk.
pub fn responses_to_chat_request(
    body: &Map<String, Value>,
    upstream_model: &str,
) -> Result<Map<String, Value>, TranslateError> {
    let mut messages = Vec::new();
    if let Some(text) = opt_str(body, "instructions", "")?.filter(|t| !t.is_empty()) {
        messages.push(json!({"role": "system", "content": text}));
    }
    match get(body, "input") {
        None => {
            return Err(TranslateError::Missing {
                field: "input".into(),
            });
        }
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => push_items(items, 0, &mut messages, None)?,
        Some(_) => return Err(wrong_type("input".into(), "a string or an array")),
    }
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    out.insert("messages".into(), Value::Array(messages));
    if let Some(n) = opt_positive_u32(body, "max_output_tokens", "")? {
        out.insert("max_completion_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = opt_number(body, key, "")? {
            out.insert(key.into(), json!(v));
        }
    }
    if let Some(user) = opt_str(body, "safety_identifier", "")?.or(opt_str(body, "user", "")?) {
        out.insert("user".into(), user.into());
    }
    if let Some(effort) = get(body, "reasoning")
        .and_then(|r| r.get("effort"))
        .and_then(Value::as_str)
    {
        out.insert("reasoning_effort".into(), effort.into());
    }
    if let Some(format) = response_format(body)? {
        out.insert("response_format".into(), format);
    }
    if opt_bool(body, "stream", "")? == Some(true) {
        out.insert("stream".into(), true.into());
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    copy_tools(body, &mut out)?;
    Ok(out)
}

/// Appends the Chat messages for `items`. With `starts`, records for each message the
/// index (offset by `base`) of the item that opened it.
pub(crate) fn push_items(
    items: &[Value],
    base: usize,
    out: &mut Vec<Value>,
    mut starts: Option<&mut Vec<usize>>,
) -> Result<(), TranslateError> {
    // Function calls join the assistant message right before them.
    let mut open_assistant = false;
    for (i, item) in items.iter().enumerate() {
        let path = format!("input[{}]", base + i);
        let it = as_object(item, || path.clone())?;
        let before = out.len();
        let kind = opt_str(it, "type", &path)?.unwrap_or("message");
        match kind {
            "message" => {
                let (msg, assistant) = message(it, &path)?;
                out.push(msg);
                open_assistant = assistant;
            }
            "function_call" => {
                let call = json!({
                    "id": req_str(it, "call_id", &path)?,
                    "type": "function",
                    "function": {
                        "name": req_str(it, "name", &path)?,
                        "arguments": opt_str(it, "arguments", &path)?.unwrap_or("{}"),
                    },
                });
                match out.last_mut().filter(|_| open_assistant) {
                    Some(Value::Object(m)) => {
                        let calls = m.entry("tool_calls").or_insert_with(|| json!([]));
                        if let Value::Array(calls) = calls {
                            calls.push(call);
                        }
                    }
                    _ => {
                        out.push(
                            json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                        );
                        open_assistant = true;
                    }
                }
            }
            "function_call_output" => {
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": req_str(it, "call_id", &path)?,
                    "content": output_text(get(it, "output"), &field(&path, "output"))?,
                }));
                open_assistant = false;
            }
            k if SKIPPED_ITEMS.contains(&k) => {}
            "item_reference" => {
                return Err(TranslateError::Unsupported {
                    field: field(&path, "type"),
                    what: "`item_reference` (it needs the provider's stored items)".into(),
                    target: "Chat Completions or Anthropic",
                });
            }
            other => {
                return Err(TranslateError::Unsupported {
                    field: field(&path, "type"),
                    what: format!("input item type `{other}`"),
                    target: "Chat Completions or Anthropic",
                });
            }
        }
        if let Some(starts) = starts.as_deref_mut() {
            starts.extend(std::iter::repeat_n(base + i, out.len() - before));
        }
    }
    Ok(())
}

/// A message item → a Chat message, and whether it is the assistant's.
fn message(it: &Map<String, Value>, path: &str) -> Result<(Value, bool), TranslateError> {
    let role = req_str(it, "role", path)?;
    let content_path = field(path, "content");
    let content = get(it, "content");
    let msg = match role {
        "user" => json!({"role": "user", "content": user_content(content, &content_path)?}),
        "assistant" => {
            let text = text_of(content, &content_path)?;
            json!({"role": "assistant", "content": text})
        }
        // Compatible servers do not all know `developer`; `system` means the same there.
        "system" | "developer" => {
            json!({"role": "system", "content": text_of(content, &content_path)?})
        }
        other => {
            return Err(TranslateError::Invalid {
                field: field(path, "role"),
                reason: format!("unknown role `{other}`"),
            });
        }
    };
    Ok((msg, role == "assistant"))
}

/// User content: a string, or parts with text and images.
fn user_content(content: Option<&Value>, path: &str) -> Result<Value, TranslateError> {
    let parts = match content {
        None => return Ok(Value::String(String::new())),
        Some(Value::String(s)) => return Ok(Value::String(s.clone())),
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(wrong_type(path.to_owned(), "a string or an array")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let pp = format!("{path}[{i}]");
        let part = as_object(p, || pp.clone())?;
        match req_str(part, "type", &pp)? {
            "input_text" | "output_text" | "text" => {
                out.push(json!({"type": "text", "text": req_str(part, "text", &pp)?}));
            }
            "input_image" => {
                let Some(url) = opt_str(part, "image_url", &pp)? else {
                    return Err(TranslateError::Unsupported {
                        field: field(&pp, "file_id"),
                        what: "an image by `file_id` (it needs the provider's file store)".into(),
                        target: "Chat Completions or Anthropic",
                    });
                };
                let mut image = Map::new();
                image.insert("url".into(), url.into());
                if let Some(detail) = opt_str(part, "detail", &pp)? {
                    image.insert("detail".into(), detail.into());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(TranslateError::Unsupported {
                    field: field(&pp, "type"),
                    what: format!("content part type `{other}`"),
                    target: "Chat Completions or Anthropic",
                });
            }
        }
    }
    // A lone text part reads better (and works with more servers) as a string.
    if let [single] = out.as_mut_slice()
        && single["type"] == "text"
    {
        return Ok(single["text"].take());
    }
    Ok(Value::Array(out))
}

/// The text of content that may only hold text (system, developer, assistant): parts
/// joined without separators, as the model wrote them.
fn text_of(content: Option<&Value>, path: &str) -> Result<String, TranslateError> {
    match content {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (i, p) in parts.iter().enumerate() {
                let pp = format!("{path}[{i}]");
                let part = as_object(p, || pp.clone())?;
                match req_str(part, "type", &pp)? {
                    "input_text" | "output_text" | "text" => {
                        text.push_str(req_str(part, "text", &pp)?);
                    }
                    "refusal" => text.push_str(req_str(part, "refusal", &pp)?),
                    other => {
                        return Err(TranslateError::Unsupported {
                            field: field(&pp, "type"),
                            what: format!("content part type `{other}` in this message"),
                            target: "Chat Completions or Anthropic",
                        });
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(wrong_type(path.to_owned(), "a string or an array")),
    }
}

/// A function call's output: a string, or parts whose text is joined (tool messages
/// carry text only).
fn output_text(output: Option<&Value>, path: &str) -> Result<String, TranslateError> {
    match output {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            Ok(texts.join("\n\n"))
        }
        Some(_) => Err(wrong_type(path.to_owned(), "a string or an array")),
    }
}

/// `text.format` → `response_format`.
fn response_format(body: &Map<String, Value>) -> Result<Option<Value>, TranslateError> {
    let Some(format) = get(body, "text").and_then(|t| t.get("format")) else {
        return Ok(None);
    };
    let f = as_object(format, || "text.format".into())?;
    Ok(match req_str(f, "type", "text.format")? {
        "json_schema" => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = get(f, key) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        "json_object" => Some(json!({"type": "json_object"})),
        _ => None,
    })
}

/// Function tools (`{type, name, parameters}` flat) → Chat tools (`{type, function}`);
/// other tool types are hosted by the Responses API and dropped.
fn copy_tools(
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<(), TranslateError> {
    let mut tools = Vec::new();
    for (i, tool) in opt_array(body, "tools", "")?
        .into_iter()
        .flatten()
        .enumerate()
    {
        let p = format!("tools[{i}]");
        let t = as_object(tool, || p.clone())?;
        if req_str(t, "type", &p)? != "function" {
            continue;
        }
        let mut function = Map::new();
        function.insert("name".into(), req_str(t, "name", &p)?.into());
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = get(t, key) {
                function.insert(key.into(), v.clone());
            }
        }
        tools.push(json!({"type": "function", "function": function}));
    }
    if tools.is_empty() {
        return Ok(());
    }
    if let Some(choice) = get(body, "tool_choice") {
        let choice = match choice {
            Value::String(s) => Value::String(s.clone()),
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                json!({"type": "function", "function": {"name": req_str(o, "name", "tool_choice")?}})
            }
            // A hosted tool or an allowed-tools list: let the model choose.
            Value::Object(_) => json!("auto"),
            _ => return Err(wrong_type("tool_choice".into(), "a string or an object")),
        };
        out.insert("tool_choice".into(), choice);
    }
    if let Some(parallel) = opt_bool(body, "parallel_tool_calls", "")? {
        out.insert("parallel_tool_calls".into(), parallel.into());
    }
    out.insert("tools".into(), Value::Array(tools));
    Ok(())
}
