//! A small builder that renders one neutral script into OpenAI or Anthropic messages.

use serde_json::{Value, json};

/// Wire format of a generated conversation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    OpenAi,
    Anthropic,
}

impl Fmt {
    pub const BOTH: [Fmt; 2] = [Fmt::OpenAi, Fmt::Anthropic];
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
    shape: &'static str,
    note: String,
    msgs: Vec<Value>,
    pending: Vec<String>,
    evident: Option<usize>,
    pattern: Option<&'static str>,
    rng: u64,
}

impl Conv {
    pub fn new(id: &str, fmt: Fmt, shape: &'static str, note: &str) -> Conv {
        let mut seed = 0xcbf2_9ce4_8422_2325u64;
        for b in id.bytes().chain(fmt.name().bytes()) {
            seed = (seed ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Conv {
            id: format!("{id}-{}", fmt.name()),
            fmt,
            shape,
            note: note.into(),
            msgs: Vec::new(),
            pending: Vec::new(),
            evident: None,
            pattern: None,
            rng: seed,
        }
    }

    /// Marks this conversation as a loop of `pattern`.
    pub fn looping(mut self, pattern: &'static str) -> Conv {
        self.pattern = Some(pattern);
        self
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

    /// Assistant turn with one native tool call.
    pub fn call(&mut self, text: &str, name: &str, args: Value) {
        self.calls(text, vec![(name, args)]);
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

    /// Result of the single pending call.
    pub fn res(&mut self, content: &str, is_error: bool) {
        self.results(vec![(content.to_string(), is_error)]);
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

pub const MINI_SYS: &str = "You are a helpful assistant that can interact with a computer.\n\nYour response must contain exactly ONE bash code block with ONE command (or commands connected with && or ||). Include a THOUGHT section before your command where you explain your reasoning process.";
pub const SWE_SYS: &str = "SETTING: You are an autonomous programmer, and you're working directly in the command line with a special interface. The special interface consists of a file editor that shows you 100 lines of a file at a time. Commands: open, goto, scroll_down, scroll_up, create, edit, search_dir, search_file, find_file, submit.";
pub const TOOL_SYS: &str = "You are a coding agent. Use the tools to inspect and edit the repository in /repo, run the tests, and finish when they pass.";
pub const TAU_RETAIL_SYS: &str = "# Retail agent policy\nAs a retail agent, you can help users cancel or modify pending orders, return or exchange delivered orders, modify their default user address, or provide information about their own profile, orders, and related products. At the beginning of the conversation, you have to authenticate the user identity by locating their user id via email, or via name + zip code. Before taking consequential actions that update the database, you must list the action detail and obtain explicit user confirmation (yes) to proceed.";
pub const TAU_AIRLINE_SYS: &str = "# Airline Agent Policy\nAs an airline agent, you can help users book, modify, or cancel flight reservations. Before taking any actions that update the booking database, you must list the action details and obtain explicit user confirmation (yes) to proceed. You should only make one tool call at a time.";

/// A pytest session summary.
pub fn pytest(c: &mut Conv, failed: &[(&str, &str)], passed: u32) -> String {
    let mut out = String::from(
        "============================= test session starts ==============================\nplatform linux -- Python 3.11.4, pytest-7.4.0, pluggy-1.2.0\nrootdir: /repo\ncollected ",
    );
    out.push_str(&format!("{} items\n\n", failed.len() as u32 + passed));
    for (name, err) in failed {
        out.push_str(&format!("______________________________ {name} ______________________________\n\n    def {name}():\n>       assert result == expected\nE       {err}\n\n"));
    }
    out.push_str(
        "=========================== short test summary info ============================\n",
    );
    for (name, err) in failed {
        out.push_str(&format!("FAILED tests/test_core.py::{name} - {err}\n"));
    }
    let d = c.dur();
    if failed.is_empty() {
        out.push_str(&format!(
            "============================== {passed} passed in {d} ==============================="
        ));
    } else {
        out.push_str(&format!(
            "========================= {} failed, {passed} passed in {d} =========================",
            failed.len()
        ));
    }
    out
}
