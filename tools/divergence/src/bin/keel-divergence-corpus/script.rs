//! Renders one script (a data file entry, see `tools/divergence/scripts/README.md`) into
//! OpenAI or Anthropic messages. Volatile values in the script's strings (`{{ts}}`,
//! `{{uuid}}`, `{{hex:N}}`, `{{dur}}`) and the call ids come from a generator seeded by
//! the conversation id and format, so the output is the same bytes on every run while
//! normalization is still exercised as in real traffic.

use serde_json::{Value, json};

/// Wire format of a generated conversation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    OpenAi,
    Anthropic,
}

impl Fmt {
    /// The spelling in scripts and in the corpus.
    pub fn parse(name: &str) -> Option<Fmt> {
        match name {
            "openai" => Some(Fmt::OpenAi),
            "anthropic" => Some(Fmt::Anthropic),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fmt::OpenAi => "openai",
            Fmt::Anthropic => "anthropic",
        }
    }
}

/// One conversation under construction.
pub struct Conv {
    id: String,
    fmt: Fmt,
    shape: String,
    note: String,
    msgs: Vec<Value>,
    pending: Vec<String>,
    evident: Option<usize>,
    pattern: Option<String>,
    rng: u64,
}

impl Conv {
    pub fn new(id: &str, fmt: Fmt, shape: &str, note: &str) -> Conv {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for b in id.bytes().chain(fmt.name().bytes()) {
            seed = (seed ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Conv {
            id: format!("{id}-{}", fmt.name()),
            fmt,
            shape: shape.into(),
            note: note.into(),
            msgs: Vec::new(),
            pending: Vec::new(),
            evident: None,
            pattern: None,
            rng: seed,
        }
    }

    /// Marks this conversation as a loop of `pattern`.
    pub fn looping(mut self, pattern: &str) -> Conv {
        self.pattern = Some(pattern.into());
        self
    }

    /// `s` with its placeholders replaced by fresh volatile values, left to right.
    /// Unknown placeholders are an error in the script.
    pub fn expand(&mut self, s: &str) -> Result<String, String> {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| format!("unclosed placeholder in {s:?}"))?;
            let value = match &after[..close] {
                "ts" => self.ts(),
                "uuid" => self.uuid(),
                "dur" => self.dur(),
                other => match other.strip_prefix("hex:").and_then(|n| n.parse().ok()) {
                    Some(n) => self.hex(n),
                    None => return Err(format!("unknown placeholder {{{{{other}}}}}")),
                },
            };
            out.push_str(&value);
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// [`Conv::expand`] applied to every string inside a JSON value (tool arguments).
    pub fn expand_json(&mut self, v: &Value) -> Result<Value, String> {
        Ok(match v {
            Value::String(s) => Value::String(self.expand(s)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.expand_json(x))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), self.expand_json(x)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }

    /// The loop is evident from the history as it stands now: the next request shows it.
    pub fn evident(&mut self) {
        if self.evident.is_none() {
            self.evident = Some(self.msgs.len());
        }
    }

    pub fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn alnum(&mut self, n: usize) -> String {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..n)
            .map(|_| A[(self.next() % A.len() as u64) as usize] as char)
            .collect()
    }

    pub fn hex(&mut self, n: usize) -> String {
        loop {
            let s: String = (0..n)
                .map(|_| char::from(b"0123456789abcdef"[(self.next() % 16) as usize]))
                .collect();
            if s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic()) {
                return s;
            }
        }
    }

    pub fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// An ISO timestamp that moves forward.
    pub fn ts(&mut self) -> String {
        let m = self.next() % 60;
        let s = self.next() % 60;
        format!("2024-06-11T14:{m:02}:{s:02}.{:03}Z", self.next() % 1000)
    }

    pub fn dur(&mut self) -> String {
        format!("{}.{:02}s", self.next() % 4, self.next() % 100)
    }

    pub fn sys(&mut self, s: &str) {
        // Anthropic's system prompt is top-level, not part of `messages`.
        if self.fmt == Fmt::OpenAi {
            self.msgs.push(json!({"role": "system", "content": s}));
        }
    }

    pub fn user(&mut self, s: &str) {
        self.msgs.push(json!({"role": "user", "content": s}));
    }

    /// Assistant text only.
    pub fn say(&mut self, s: &str) {
        match self.fmt {
            Fmt::OpenAi => self.msgs.push(json!({"role": "assistant", "content": s})),
            Fmt::Anthropic => self
                .msgs
                .push(json!({"role": "assistant", "content": [{"type": "text", "text": s}]})),
        }
    }

    /// Assistant turn with native tool calls.
    pub fn calls(&mut self, text: &str, calls: Vec<(&str, Value)>) {
        self.pending.clear();
        match self.fmt {
            Fmt::OpenAi => {
                let mut tcs = Vec::new();
                for (name, args) in calls {
                    let id = format!("call_{}", self.alnum(24));
                    self.pending.push(id.clone());
                    tcs.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}));
                }
                let content = if text.is_empty() {
                    Value::Null
                } else {
                    Value::from(text)
                };
                self.msgs
                    .push(json!({"role": "assistant", "content": content, "tool_calls": tcs}));
            }
            Fmt::Anthropic => {
                let mut blocks = Vec::new();
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
                for (name, args) in calls {
                    let id = format!("toolu_01{}", self.alnum(22));
                    self.pending.push(id.clone());
                    blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
                }
                self.msgs
                    .push(json!({"role": "assistant", "content": blocks}));
            }
        }
    }

    /// Results of the pending calls, in order.
    pub fn results(&mut self, rs: Vec<(String, bool)>) {
        let ids = std::mem::take(&mut self.pending);
        match self.fmt {
            Fmt::OpenAi => {
                for (id, (c, _)) in ids.iter().zip(rs) {
                    self.msgs
                        .push(json!({"role": "tool", "tool_call_id": id, "content": c}));
                }
            }
            Fmt::Anthropic => {
                let blocks: Vec<Value> = ids
                    .iter()
                    .zip(rs)
                    .map(|(id, (c, e))| {
                        if e {
                            json!({"type": "tool_result", "tool_use_id": id, "content": c, "is_error": true})
                        } else {
                            json!({"type": "tool_result", "tool_use_id": id, "content": [{"type": "text", "text": c}]})
                        }
                    })
                    .collect();
                self.msgs.push(json!({"role": "user", "content": blocks}));
            }
        }
    }

    /// mini-swe-agent style action: THOUGHT then one bash block.
    pub fn cmd(&mut self, thought: &str, cmd: &str) {
        self.say(&format!("THOUGHT: {thought}\n\n```bash\n{cmd}\n```"));
    }

    /// mini-swe-agent style observation.
    pub fn env(&mut self, rc: i32, out: &str) {
        self.user(&format!(
            "<returncode>{rc}</returncode>\n<output>\n{out}\n</output>"
        ));
    }

    /// SWE-agent style action: DISCUSSION then an unlabelled fence.
    pub fn swe(&mut self, discussion: &str, cmd: &str) {
        self.say(&format!("DISCUSSION\n{discussion}\n\n```\n{cmd}\n```"));
    }

    /// SWE-agent style observation with its prompt footer.
    pub fn obs(&mut self, out: &str, open_file: &str) {
        self.user(&format!(
            "{out}\n(Open file: {open_file})\n(Current directory: /repo)\nbash-$"
        ));
    }

    pub fn into_json(self) -> Value {
        let label = match self.pattern {
            Some(p) => {
                json!({"kind": "loop", "pattern": p, "evident_at": self.evident.unwrap_or(self.msgs.len())})
            }
            None => json!({"kind": "healthy"}),
        };
        json!({
            "id": self.id,
            "format": self.fmt.name(),
            "shape": self.shape,
            "label": label,
            "note": self.note,
            "messages": self.msgs,
        })
    }
}
