//! What the app sent besides its body that a target of the same API needs:
//! Anthropic's `anthropic-version` and `anthropic-beta` headers (the body
//! may carry fields that only a beta enables, such as `context_management`)
//! and the query string (Claude Code calls `/v1/messages?beta=true`).
//!
//! The rule: they go to a target that speaks the API the app called, which
//! gets the app's request as it is; they are dropped when Keel translates,
//! because they name features of the app's API, not the target's (the
//! translation already dropped the body fields they enable).

use http::{HeaderMap, HeaderValue, request::Parts};

use crate::format::Format;

/// Longest query string forwarded, bytes (a longer one is dropped).
const MAX_QUERY: usize = 1024;

/// The app's API headers and query string, for a same-API target.
#[derive(Debug, Default, Clone)]
pub struct Passthrough {
    anthropic_version: Option<HeaderValue>,
    anthropic_beta: Vec<HeaderValue>,
    query: Option<String>,
}

impl Passthrough {
    /// Reads them from the app's request in `format`.
    pub fn from_parts(format: Format, parts: &Parts) -> Self {
        let query = parts
            .uri
            .query()
            .filter(|q| !q.is_empty() && q.len() <= MAX_QUERY)
            .map(str::to_owned);
        match format {
            Format::Anthropic => Self {
                anthropic_version: parts.headers.get("anthropic-version").cloned(),
                anthropic_beta: parts
                    .headers
                    .get_all("anthropic-beta")
                    .iter()
                    .cloned()
                    .collect(),
                query,
            },
            Format::OpenAi => Self {
                query,
                ..Self::default()
            },
        }
    }

    /// What of it goes to a target of `upstream` format, for an app that
    /// called `caller`: all of it for the same API, nothing when translating.
    pub fn for_target(&self, caller: Format, upstream: Format) -> Option<&Self> {
        (caller == upstream).then_some(self)
    }

    /// `url` with the app's query string.
    pub fn url(&self, url: String) -> String {
        match &self.query {
            Some(q) => format!("{url}?{q}"),
            None => url,
        }
    }

    /// The app's `anthropic-version`, if it sent one.
    pub fn anthropic_version(&self) -> Option<&HeaderValue> {
        self.anthropic_version.as_ref()
    }

    /// Adds the app's `anthropic-beta` headers.
    pub fn add_betas(&self, headers: &mut HeaderMap) {
        for v in &self.anthropic_beta {
            headers.append("anthropic-beta", v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn anthropic_headers_and_query_go_to_the_same_api_only() {
        let p = Passthrough::from_parts(
            Format::Anthropic,
            &parts(
                "/v1/messages?beta=true",
                &[
                    ("anthropic-version", "2023-06-01"),
                    ("anthropic-beta", "context-management-2025-06-27"),
                    ("anthropic-beta", "interleaved-thinking-2025-05-14"),
                ],
            ),
        );
        let same = p.for_target(Format::Anthropic, Format::Anthropic).unwrap();
        assert_eq!(
            same.url("http://x/v1/messages".into()),
            "http://x/v1/messages?beta=true"
        );
        assert_eq!(same.anthropic_version().unwrap(), "2023-06-01");
        let mut h = HeaderMap::new();
        same.add_betas(&mut h);
        assert_eq!(h.get_all("anthropic-beta").iter().count(), 2);
        assert!(p.for_target(Format::Anthropic, Format::OpenAi).is_none());
    }

    #[test]
    fn openai_apps_pass_only_their_query() {
        let p = Passthrough::from_parts(
            Format::OpenAi,
            &parts("/v1/chat/completions", &[("anthropic-beta", "x")]),
        );
        let same = p.for_target(Format::OpenAi, Format::OpenAi).unwrap();
        assert_eq!(same.url("u".into()), "u");
        assert!(same.anthropic_version().is_none());
    }
}
