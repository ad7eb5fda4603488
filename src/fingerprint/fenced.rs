//! Actions written as fenced shell blocks inside assistant text (mini-swe-agent,
//! SWE-agent and similar text-protocol agents).

/// Fence labels treated as "run this". Unlabelled fences count because SWE-agent emits its
/// commands that way; `python`, `diff` and the like are shown code, not actions.
const SHELL_LANGS: &[&str] = &["", "bash", "sh", "shell", "zsh", "console", "terminal"];

/// Whether a fence label asks to run a shell command: the labels above, or a harness's own
/// label for one (mini-swe-agent 2 uses `mswea_bash_command` so that examples in its prompts
/// are not taken for actions).
fn is_shell(lang: &str) -> bool {
    SHELL_LANGS.contains(&lang) || lang.ends_with("bash_command") || lang.ends_with("shell_command")
}

/// Commands found in `text` and the prose with those blocks removed.
pub(crate) struct Split<'a> {
    /// Command bodies, in order.
    pub commands: Vec<&'a str>,
    /// Text outside the command blocks (other code blocks stay).
    pub prose: String,
}

/// Splits `text` into shell command blocks and remaining prose. An unterminated fence runs
/// to the end of the text, as a model cut off mid-block would have meant.
pub(crate) fn split(text: &str) -> Split<'_> {
    let mut commands = Vec::new();
    let mut prose = String::with_capacity(text.len());
    let mut pos = 0;
    while let Some(rel) = text[pos..].find("```") {
        let open = pos + rel;
        let info_end = text[open..].find('\n').map_or(text.len(), |i| open + i);
        let lang = text[open + 3..info_end].trim().to_ascii_lowercase();
        let body_start = (info_end + 1).min(text.len());
        let (body_end, next) = match text[body_start..].find("```") {
            Some(i) => (body_start + i, body_start + i + 3),
            None => (text.len(), text.len()),
        };
        if is_shell(&lang) {
            prose.push_str(&text[pos..open]);
            let body = text[body_start..body_end].trim();
            if !body.is_empty() {
                commands.push(body);
            }
        } else {
            prose.push_str(&text[pos..next]);
        }
        pos = next;
    }
    prose.push_str(&text[pos..]);
    Split { commands, prose }
}

/// The program a command runs, used as its "tool name": the first word after any
/// `cd DIR &&` prefix and environment assignments.
pub(crate) fn program(cmd: &str) -> &str {
    let mut segment = cmd;
    while let Some(rest) = segment.trim_start().strip_prefix("cd ") {
        match rest.find("&&") {
            Some(i) => segment = &rest[i + 2..],
            None => break,
        }
    }
    segment
        .split_whitespace()
        .find(|w| !w.contains('='))
        .unwrap_or("")
}
