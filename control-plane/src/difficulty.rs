//! How hard a request looks, from the compact features the sidecar sends
//! (sizes, counts and flags; never the prompt): a score from points for
//! prompt size, tools, code, images, requested output size and reasoning
//! cues, and a level 1 (a one-line question) to 3 (a long tool-using coding
//! or reasoning task). The `savings` objective routes to the cheapest model
//! whose tier is at least the level. Pure arithmetic: nanoseconds.

use std::fmt::Write as _;

use keel::pb::RequestFeatures;

/// Highest difficulty level (and so the highest tier difficulty asks for).
pub const MAX_LEVEL: u32 = 3;

/// The estimate, with the points that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difficulty {
    /// 1 ..= [`MAX_LEVEL`].
    pub level: u32,
    pub score: u32,
    prompt: u32,
    tools: u32,
    code: u32,
    images: u32,
    output: u32,
    reasoning: u32,
}

/// Estimates the difficulty of a request.
pub fn estimate(f: &RequestFeatures) -> Difficulty {
    let prompt = match f.estimated_prompt_tokens {
        0..2_000 => 0,
        2_000..16_000 => 1,
        _ => 2,
    };
    let tools = match (f.uses_tools, f.tool_count) {
        (false, 0) => 0,
        (_, 0..5) => 1,
        _ => 2,
    };
    let code = match f.code_cues {
        0 => 0,
        1..5 => 1,
        _ => 2,
    };
    let images = u32::from(f.has_images);
    let output = match f.max_output_tokens {
        0..2_000 => 0,
        2_000..8_000 => 1,
        _ => 2,
    };
    let reasoning = match f.reasoning_cues {
        0 => 0,
        1..3 => 1,
        _ => 2,
    } + if f.reasoning_requested { 2 } else { 0 };
    let score = prompt + tools + code + images + output + reasoning;
    let level = match score {
        0..=1 => 1,
        2..=3 => 2,
        _ => 3,
    };
    Difficulty {
        level,
        score,
        prompt,
        tools,
        code,
        images,
        output,
        reasoning,
    }
}

impl Difficulty {
    /// The estimate in words, for the decision reason:
    /// `difficulty 3 (score 5: prompt +1, tools +2, code +2)`.
    pub fn explain(&self) -> String {
        let mut s = format!("difficulty {} (score {}", self.level, self.score);
        let mut sep = ": ";
        for (name, points) in [
            ("prompt", self.prompt),
            ("tools", self.tools),
            ("code", self.code),
            ("images", self.images),
            ("output", self.output),
            ("reasoning", self.reasoning),
        ] {
            if points > 0 {
                let _ = write!(s, "{sep}{name} +{points}");
                sep = ", ";
            }
        }
        s.push(')');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> RequestFeatures {
        RequestFeatures {
            estimated_prompt_tokens: 12,
            ..Default::default()
        }
    }

    #[test]
    fn a_one_line_question_is_easy() {
        let d = estimate(&features());
        assert_eq!((d.level, d.score), (1, 0));
        assert_eq!(d.explain(), "difficulty 1 (score 0)");
    }

    #[test]
    fn a_long_tool_using_coding_task_is_hard() {
        let d = estimate(&RequestFeatures {
            estimated_prompt_tokens: 6_000,
            uses_tools: true,
            tool_count: 6,
            code_cues: 8,
            reasoning_cues: 2,
            ..features()
        });
        assert_eq!(d.level, 3);
        assert_eq!(
            d.explain(),
            "difficulty 3 (score 6: prompt +1, tools +2, code +2, reasoning +1)"
        );
    }

    #[test]
    fn a_few_cues_make_a_moderate_request() {
        let d = estimate(&RequestFeatures {
            code_cues: 1,
            reasoning_cues: 1,
            ..features()
        });
        assert_eq!(d.level, 2);
        let d = estimate(&RequestFeatures {
            reasoning_requested: true,
            ..features()
        });
        assert_eq!(d.level, 2);
        let d = estimate(&RequestFeatures {
            has_images: true,
            ..features()
        });
        assert_eq!(d.level, 1, "an image alone is not hard");
    }

    #[test]
    fn a_huge_prompt_with_a_long_answer_is_hard() {
        let d = estimate(&RequestFeatures {
            estimated_prompt_tokens: 50_000,
            max_output_tokens: 10_000,
            ..features()
        });
        assert_eq!(d.level, 3);
    }

    #[test]
    fn estimating_is_cheap() {
        let f = features();
        let start = std::time::Instant::now();
        for _ in 0..10_000 {
            std::hint::black_box(estimate(std::hint::black_box(&f)));
        }
        assert!(start.elapsed() < std::time::Duration::from_millis(100));
    }
}
