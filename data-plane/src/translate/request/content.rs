//! Message content: text parts and images in both shapes.

use serde_json::{Map, Value, json};

use super::super::TranslateError;
use super::super::json::{as_object, field, get, req_str, wrong_type};

const ANTHROPIC: &str = "Anthropic";
const OPENAI: &str = "OpenAI";

/// An Anthropic text block, carrying the caller's `cache_control` breakpoint if any.
fn text_block(text: &str, cache_control: Option<&Value>) -> Value {
    let mut block = Map::new();
    block.insert("type".into(), "text".into());
    block.insert("text".into(), text.into());
    if let Some(cc) = cache_control {
        block.insert("cache_control".into(), cc.clone());
    }
    Value::Object(block)
}

/// Which OpenAI content part types a role may carry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Parts {
    /// Text only (system, developer, tool).
    Text,
    /// Text and refusals (assistant).
    Assistant,
    /// Text and images (user).
    User,
}

/// Converts OpenAI message `content` (string, array of parts, or null) into Anthropic
/// blocks. Empty text is dropped because Anthropic rejects empty text blocks.
pub(super) fn openai_content_to_blocks(
    content: Option<&Value>,
    allowed: Parts,
    path: &str,
) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![text_block(s, None)]),
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(wrong_type(path.to_owned(), "a string or an array")),
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let part_path = format!("{path}[{i}]");
        let obj = as_object(part, || part_path.clone())?;
        match req_str(obj, "type", &part_path)? {
            "text" => {
                let text = req_str(obj, "text", &part_path)?;
                if !text.is_empty() {
                    blocks.push(text_block(text, get(obj, "cache_control")));
                }
            }
            "refusal" if allowed == Parts::Assistant => {
                let text = req_str(obj, "refusal", &part_path)?;
                if !text.is_empty() {
                    blocks.push(text_block(text, None));
                }
            }
            "image_url" if allowed == Parts::User => blocks.push(openai_image(obj, &part_path)?),
            other => {
                return Err(TranslateError::Unsupported {
                    field: field(&part_path, "type"),
                    what: format!("content part type `{other}` in this message"),
                    target: ANTHROPIC,
                });
            }
        }
    }
    Ok(blocks)
}

/// OpenAI `image_url` part → Anthropic image block (base64 for data URLs, url otherwise).
fn openai_image(part: &Map<String, Value>, path: &str) -> Result<Value, TranslateError> {
    let url_path = field(path, "image_url.url");
    // The spec says an object with `url`; some clients send the URL string directly.
    let url = match get(part, "image_url") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(o)) => req_str(o, "url", &field(path, "image_url"))?,
        Some(_) => return Err(wrong_type(field(path, "image_url"), "an object")),
        None => {
            return Err(TranslateError::Missing {
                field: field(path, "image_url"),
            });
        }
    };
    let source = if let Some(rest) = url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| TranslateError::Invalid {
                field: url_path.clone(),
                reason: "data URL has no `,` before its payload".into(),
            })?;
        let media_type = header
            .strip_suffix(";base64")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| TranslateError::Invalid {
                field: url_path.clone(),
                reason: "data URL must be `data:<media type>;base64,<data>`".into(),
            })?;
        json!({"type": "base64", "media_type": media_type, "data": data})
    } else if url.starts_with("https://") || url.starts_with("http://") {
        json!({"type": "url", "url": url})
    } else {
        return Err(TranslateError::Invalid {
            field: url_path,
            reason: "image URL must be a data: URL or an http(s) URL".into(),
        });
    };
    let mut block = Map::new();
    block.insert("type".into(), "image".into());
    block.insert("source".into(), source);
    if let Some(cc) = get(part, "cache_control") {
        block.insert("cache_control".into(), cc.clone());
    }
    Ok(Value::Object(block))
}

/// Anthropic image block → OpenAI `image_url` part.
pub(super) fn anthropic_image(
    block: &Map<String, Value>,
    path: &str,
) -> Result<Value, TranslateError> {
    let source_path = field(path, "source");
    let source = as_object(
        get(block, "source").ok_or_else(|| TranslateError::Missing {
            field: source_path.clone(),
        })?,
        || source_path.clone(),
    )?;
    let url = match req_str(source, "type", &source_path)? {
        "base64" => {
            let media = req_str(source, "media_type", &source_path)?;
            let data = req_str(source, "data", &source_path)?;
            format!("data:{media};base64,{data}")
        }
        "url" => req_str(source, "url", &source_path)?.to_owned(),
        other => {
            return Err(TranslateError::Unsupported {
                field: field(&source_path, "type"),
                what: format!("image source type `{other}`"),
                target: OPENAI,
            });
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Concatenated text of Anthropic content that may only hold text: a string or an array of
/// text blocks (`system`). Blocks are joined with a blank line, as separate paragraphs.
pub(super) fn anthropic_text_only(content: &Value, path: &str) -> Result<String, TranslateError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let obj = as_object(b, || p.clone())?;
                match req_str(obj, "type", &p)? {
                    "text" => texts.push(req_str(obj, "text", &p)?),
                    other => {
                        return Err(TranslateError::Unsupported {
                            field: field(&p, "type"),
                            what: format!("block type `{other}` here"),
                            target: OPENAI,
                        });
                    }
                }
            }
            Ok(texts.join("\n\n"))
        }
        _ => Err(wrong_type(path.to_owned(), "a string or an array")),
    }
}

/// Text parts (and images) from an Anthropic `tool_result.content`.
pub(super) struct ToolResultContent {
    pub text: String,
    /// Images cannot live in an OpenAI tool message; the caller re-homes them in a user turn.
    pub images: Vec<Value>,
}

pub(super) fn anthropic_tool_result_content(
    content: Option<&Value>,
    path: &str,
) -> Result<ToolResultContent, TranslateError> {
    let mut out = ToolResultContent {
        text: String::new(),
        images: Vec::new(),
    };
    let blocks = match content {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::String(s)) => {
            out.text = s.clone();
            return Ok(out);
        }
        Some(Value::Array(b)) => b,
        Some(_) => return Err(wrong_type(path.to_owned(), "a string or an array")),
    };
    let mut texts = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let obj = as_object(b, || p.clone())?;
        match req_str(obj, "type", &p)? {
            "text" => texts.push(req_str(obj, "text", &p)?),
            "image" => out.images.push(anthropic_image(obj, &p)?),
            other => {
                return Err(TranslateError::Unsupported {
                    field: field(&p, "type"),
                    what: format!("tool result block type `{other}`"),
                    target: OPENAI,
                });
            }
        }
    }
    out.text = texts.join("\n\n");
    Ok(out)
}
