//! Prices and cost (runtime-gateway.md §10.1, §10.2): the group's `pricing` first, then the
//! built-in table (exact key, else the longest key that prefixes the model id followed by `-`),
//! else no price (cost 0, one `pricing.missing` warning per model; none for mock models, which
//! cost 0 by design).

use crate::providers::Usage;
use ktsu_shared::project::Pricing;
use ktsu_shared::wire::gateway::GatewayRequest;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    /// The 5-minute cache write price.
    pub cache_write: f64,
}

impl Price {
    const fn new(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Self {
        Price {
            input,
            output,
            cache_read,
            cache_write,
        }
    }

    /// A group `pricing` entry; missing cache prices default to the input price.
    pub fn from_group(p: &Pricing) -> Self {
        Price {
            input: p.input_per_million,
            output: p.output_per_million,
            cache_read: p.cache_read_per_million.unwrap_or(p.input_per_million),
            cache_write: p.cache_write_per_million.unwrap_or(p.input_per_million),
        }
    }

    /// The cost of one successful call (§10.1): 64-bit floats, not rounded.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let uncached = usage
            .tokens_in
            .saturating_sub(usage.cache_read_tokens)
            .saturating_sub(usage.cache_write_tokens);
        (uncached as f64 * self.input
            + usage.cache_read_tokens as f64 * self.cache_read
            + usage.cache_write_tokens as f64 * self.cache_write
            + usage.tokens_out as f64 * self.output)
            / 1_000_000.0
    }

    /// The worst-case cost of a call (§10.3): every input token at the dearer of input and cache
    /// write, and `max_tokens` of output.
    pub fn reserve(&self, estimated_input_tokens: u64, max_tokens: u64) -> f64 {
        (estimated_input_tokens as f64 * self.input.max(self.cache_write)
            + max_tokens as f64 * self.output)
            / 1_000_000.0
    }
}

/// `ceil(bytes / 4)`: the token estimate of §8.2 and §10.3.
pub fn tokens_for_bytes(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// Bytes of the compact JSON of the messages plus, when there are any, of the tools (§8.2,
/// §10.3), counted without building the text.
pub fn input_bytes(request: &GatewayRequest) -> usize {
    let mut counter = ByteCounter(0);
    // Serialising into a counter cannot fail: the wire types hold only JSON-able values.
    let _ = serde_json::to_writer(&mut counter, &request.messages);
    if !request.tools.is_empty() {
        let _ = serde_json::to_writer(&mut counter, &request.tools);
    }
    counter.0
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The built-in table (§10.2), USD per million tokens: input, output, cache read, 5-minute
/// cache write.
///
/// Checked on 2026-11-24 against the vendors' pages; no row differed from the spec:
/// - Anthropic: <https://platform.claude.com/docs/en/about-claude/pricing> (model table with
///   base input, 5m cache writes, cache hits and output; rows Opus 4.6/4.5/4.1/4) and its
///   earlier edition <https://docs.anthropic.com/en/docs/about-claude/pricing> (Opus 4.1/4,
///   Sonnet 4, Sonnet 3.7, Sonnet 3.5, Haiku 3.5, Opus 3, Haiku 3). Sonnet 4.6, Sonnet 4.5 and
///   Haiku 4.5 were not in the stored excerpt of the official table; their rows follow the
///   page's stated rule (5m write = 1.25x input, hit = 0.1x input) with the $3/$15 and $1/$5
///   list prices shown on platform.claude.com model overviews, confirmed by third-party
///   copies of the table (apidog.com Sonnet 4.6 pricing, 2026-02-18; docs.electronhub.ai).
/// - OpenAI: model pages on <https://developers.openai.com/api/docs/models/> (gpt-5-nano,
///   gpt-5-mini, gpt-4.1-nano, gpt-4-turbo; gpt-5 in the gpt-5-codex comparison). gpt-5 cached
///   input, gpt-4.1, gpt-4.1-mini, gpt-4o, gpt-4o-mini, o3 (after the mid-2025 80 % cut),
///   o3-mini, o4-mini and gpt-3.5-turbo were not found on an official page in the stored
///   corpus; they keep the spec values, which agree with the secondary sources found
///   (github/docs Copilot price table, calcis.dev, llmcalc.app, codeswap.net, losclouds.com).
/// - gpt-4-turbo and gpt-3.5-turbo have no cached-input price; cache read = input, as in the
///   spec.
pub const BUILT_IN: &[(&str, Price)] = &[
    ("claude-opus-4-6", Price::new(5.00, 25.00, 0.50, 6.25)),
    ("claude-opus-4-5", Price::new(5.00, 25.00, 0.50, 6.25)),
    ("claude-opus-4-1", Price::new(15.00, 75.00, 1.50, 18.75)),
    ("claude-opus-4", Price::new(15.00, 75.00, 1.50, 18.75)),
    ("claude-sonnet-4-6", Price::new(3.00, 15.00, 0.30, 3.75)),
    ("claude-sonnet-4-5", Price::new(3.00, 15.00, 0.30, 3.75)),
    ("claude-sonnet-4", Price::new(3.00, 15.00, 0.30, 3.75)),
    ("claude-3-7-sonnet", Price::new(3.00, 15.00, 0.30, 3.75)),
    ("claude-3-5-sonnet", Price::new(3.00, 15.00, 0.30, 3.75)),
    ("claude-haiku-4-5", Price::new(1.00, 5.00, 0.10, 1.25)),
    ("claude-3-5-haiku", Price::new(0.80, 4.00, 0.08, 1.00)),
    ("claude-3-opus", Price::new(15.00, 75.00, 1.50, 18.75)),
    ("claude-3-haiku", Price::new(0.25, 1.25, 0.03, 0.30)),
    ("gpt-5", Price::new(1.25, 10.00, 0.125, 1.25)),
    ("gpt-5-mini", Price::new(0.25, 2.00, 0.025, 0.25)),
    ("gpt-5-nano", Price::new(0.05, 0.40, 0.005, 0.05)),
    ("gpt-4.1", Price::new(2.00, 8.00, 0.50, 2.00)),
    ("gpt-4.1-mini", Price::new(0.40, 1.60, 0.10, 0.40)),
    ("gpt-4.1-nano", Price::new(0.10, 0.40, 0.025, 0.10)),
    ("gpt-4o", Price::new(2.50, 10.00, 1.25, 2.50)),
    ("gpt-4o-mini", Price::new(0.15, 0.60, 0.075, 0.15)),
    ("o3", Price::new(2.00, 8.00, 0.50, 2.00)),
    ("o3-mini", Price::new(1.10, 4.40, 0.55, 1.10)),
    ("o4-mini", Price::new(1.10, 4.40, 0.275, 1.10)),
    ("gpt-4-turbo", Price::new(10.00, 30.00, 10.00, 10.00)),
    ("gpt-3.5-turbo", Price::new(0.50, 1.50, 0.50, 0.50)),
];

/// The built-in price of a bare model id: the exact key, else the longest key `K` such that the
/// id starts with `K-` (dated snapshots: `claude-haiku-4-5-20251001` → `claude-haiku-4-5`).
pub fn built_in(model: &str) -> Option<Price> {
    if let Some((_, price)) = BUILT_IN.iter().find(|(k, _)| *k == model) {
        return Some(*price);
    }
    BUILT_IN
        .iter()
        .filter(|(k, _)| {
            model.len() > k.len() && model.starts_with(k) && model.as_bytes()[k.len()] == b'-'
        })
        .max_by_key(|(k, _)| k.len())
        .map(|(_, price)| *price)
}

/// The price of `model` in a group: its `pricing` entry, else (when `use_built_in`, i.e. not a
/// mock provider) the built-in table.
pub fn lookup(model: &str, group_pricing: &[Pricing], use_built_in: bool) -> Option<Price> {
    group_pricing
        .iter()
        .find(|p| p.model == model)
        .map(Price::from_group)
        .or_else(|| if use_built_in { built_in(model) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(tokens_in: u64, tokens_out: u64, read: u64, write: u64) -> Usage {
        Usage {
            tokens_in,
            tokens_out,
            cache_read_tokens: read,
            cache_write_tokens: write,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Worked examples P1–P4 of §10.3.
    #[test]
    fn worked_examples() {
        let sonnet = built_in("claude-sonnet-4-5").unwrap();
        assert!(close(sonnet.cost(&usage(9_200, 500, 8_000, 0)), 0.0135));
        assert!(close(sonnet.cost(&usage(6_200, 400, 0, 6_000)), 0.0291));
        let mini = built_in("gpt-4o-mini").unwrap();
        assert!(close(mini.cost(&usage(12_000, 200, 10_240, 0)), 0.001152));
        assert!(close(mini.cost(&usage(1_000_000, 1_000_000, 0, 0)), 0.75));
        // B1's reserve: 8 000 bytes, max_tokens 1 024.
        assert!(close(
            sonnet.reserve(tokens_for_bytes(8_000), 1_024),
            0.02286
        ));
    }

    #[test]
    fn lookup_order_and_prefixes() {
        assert_eq!(
            built_in("claude-haiku-4-5-20251001"),
            built_in("claude-haiku-4-5")
        );
        assert_eq!(
            built_in("claude-opus-4-20250514"),
            built_in("claude-opus-4")
        );
        assert_eq!(built_in("gpt-4o-mini-2024-07-18"), built_in("gpt-4o-mini"));
        assert_ne!(built_in("gpt-4o-mini-2024-07-18"), built_in("gpt-4o"));
        assert_eq!(built_in("qwen2.5:0.5b"), None);
        assert_eq!(built_in("gpt-4"), None, "a prefix of a key is not a match");
        assert_eq!(built_in("o3x"), None, "the key must be followed by `-`");
        assert_eq!(built_in("claude-opus-4-1-20250805").unwrap().input, 15.0);

        let group = vec![Pricing {
            model: "claude-sonnet-4-5".into(),
            input_per_million: 1.0,
            output_per_million: 2.0,
            cache_read_per_million: None,
            cache_write_per_million: Some(9.0),
        }];
        let p = lookup("claude-sonnet-4-5", &group, true).unwrap();
        assert_eq!(p, Price::new(1.0, 2.0, 1.0, 9.0));
        assert_eq!(
            lookup("claude-haiku-4-5", &group, true),
            built_in("claude-haiku-4-5")
        );
        assert_eq!(
            lookup("claude-haiku-4-5", &group, false),
            None,
            "mock models"
        );
    }

    #[test]
    fn input_bytes_are_those_of_the_compact_json() {
        let request: GatewayRequest = serde_json::from_value(serde_json::json!({
            "group": "g",
            "messages": [{"role": "user", "content": "héllo"}],
            "tools": [{"name": "t", "description": "", "input_schema": {"type": "object"}}]
        }))
        .unwrap();
        let expected = serde_json::to_vec(&request.messages).unwrap().len()
            + serde_json::to_vec(&request.tools).unwrap().len();
        assert_eq!(input_bytes(&request), expected);
        let mut no_tools = request.clone();
        no_tools.tools.clear();
        assert_eq!(
            input_bytes(&no_tools),
            serde_json::to_vec(&request.messages).unwrap().len()
        );
    }

    #[test]
    fn degenerate_usage_never_goes_negative() {
        let p = Price::new(1.0, 1.0, 1.0, 1.0);
        assert!(p.cost(&usage(10, 0, 20, 20)) >= 0.0);
        assert_eq!(tokens_for_bytes(0), 0);
        assert_eq!(tokens_for_bytes(1), 1);
        assert_eq!(tokens_for_bytes(8), 2);
        assert_eq!(tokens_for_bytes(9), 3);
    }
}
