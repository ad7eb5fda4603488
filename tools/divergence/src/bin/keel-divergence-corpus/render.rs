//! The script format (one JSON array of scripts per file) and its rendering into
//! conversations, one per listed wire format.

use crate::script::{Conv, Fmt};
use serde::Deserialize;
use serde_json::Value;

/// One conversation, format-neutral.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// Base id; the rendered id is suffixed with the format.
    pub id: String,
    /// Agent shape: `tool`, `fenced`, `swe`, `tau`.
    pub shape: String,
    /// What happens in it, for reviewers.
    pub note: String,
    /// The loop pattern it shows; absent for a healthy conversation.
    #[serde(default, rename = "loop")]
    pub looping: Option<String>,
    /// Wire formats to render it in: `openai`, `anthropic`.
    pub formats: Vec<String>,
    pub steps: Vec<Step>,
}

/// One step of a script.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// System prompt (top-level in Anthropic's format, so absent from its messages).
    System(String),
    /// A user (or simulated customer) message.
    User(String),
    /// Assistant text only.
    Say(String),
    /// Assistant turn with native tool calls (and optional text).
    Call { text: String, calls: Vec<Call> },
    /// Results of the pending calls, in order.
    Results(Vec<ToolResult>),
    /// mini-swe-agent action: THOUGHT, then one bash block.
    Bash { thought: String, command: String },
    /// mini-swe-agent observation.
    Output { rc: i32, out: String },
    /// SWE-agent action: DISCUSSION, then an unlabelled fence.
    Swe { discussion: String, command: String },
    /// SWE-agent observation with its prompt footer.
    Observation { out: String, open_file: String },
    /// The loop is evident from the history as it stands: the next request shows it.
    Evident(bool),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    pub name: String,
    pub args: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    pub content: String,
    #[serde(default)]
    pub error: bool,
}

/// Renders `script` in every format it lists, in that order.
pub fn render(script: &Script) -> Result<Vec<Conv>, String> {
    script
        .formats
        .iter()
        .map(|f| {
            let fmt =
                Fmt::parse(f).ok_or_else(|| format!("{}: unknown format {f:?}", script.id))?;
            render_one(script, fmt).map_err(|e| format!("{}: {e}", script.id))
        })
        .collect()
}

fn render_one(script: &Script, fmt: Fmt) -> Result<Conv, String> {
    let mut c = Conv::new(&script.id, fmt, &script.shape, &script.note);
    if let Some(p) = &script.looping {
        c = c.looping(p);
    }
    for step in &script.steps {
        match step {
            Step::System(s) => {
                let s = c.expand(s)?;
                c.sys(&s);
            }
            Step::User(s) => {
                let s = c.expand(s)?;
                c.user(&s);
            }
            Step::Say(s) => {
                let s = c.expand(s)?;
                c.say(&s);
            }
            Step::Call { text, calls } => {
                let text = c.expand(text)?;
                let mut expanded = Vec::with_capacity(calls.len());
                for call in calls {
                    expanded.push((call.name.as_str(), c.expand_json(&call.args)?));
                }
                c.calls(&text, expanded);
            }
            Step::Results(rs) => {
                let mut expanded = Vec::with_capacity(rs.len());
                for r in rs {
                    expanded.push((c.expand(&r.content)?, r.error));
                }
                c.results(expanded);
            }
            Step::Bash { thought, command } => {
                let (t, k) = (c.expand(thought)?, c.expand(command)?);
                c.cmd(&t, &k);
            }
            Step::Output { rc, out } => {
                let out = c.expand(out)?;
                c.env(*rc, &out);
            }
            Step::Swe {
                discussion,
                command,
            } => {
                let (d, k) = (c.expand(discussion)?, c.expand(command)?);
                c.swe(&d, &k);
            }
            Step::Observation { out, open_file } => {
                let out = c.expand(out)?;
                c.obs(&out, open_file);
            }
            Step::Evident(true) => c.evident(),
            Step::Evident(false) => {}
        }
    }
    Ok(c)
}
