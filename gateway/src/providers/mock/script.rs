//! Mock script rules (runtime-gateway.md §8.3): the first rule whose every given field matches
//! wins; `times` limits how often a rule applies in this process.

use ktsu_shared::project::{MockReply, MockRule, MockScript};
use ktsu_shared::wire::gateway::Role;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::providers::Call;

/// A loaded script with a use counter per rule.
#[derive(Debug)]
pub struct Script {
    rules: Vec<(MockRule, AtomicU64)>,
}

/// What a rule is matched against.
pub struct Subject<'a> {
    pub call: &'a Call<'a>,
    /// The call counter of (run_id, step_id), 1-based.
    pub n: u64,
}

impl Script {
    pub fn new(script: MockScript) -> Self {
        Script {
            rules: script
                .rules
                .into_iter()
                .map(|r| (r, AtomicU64::new(0)))
                .collect(),
        }
    }

    /// The reply of the first matching rule that still has uses left.
    pub fn reply(&self, subject: &Subject<'_>) -> Option<&MockReply> {
        self.rules.iter().find_map(|(rule, used)| {
            if !matches(rule, subject) {
                return None;
            }
            let available = match rule.times {
                None => true,
                Some(times) => used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < times).then_some(n + 1)
                    })
                    .is_ok(),
            };
            available.then_some(&rule.reply)
        })
    }
}

fn matches(rule: &MockRule, s: &Subject<'_>) -> bool {
    let m = &rule.when;
    let request = s.call.request;
    let metadata = |key: &str| {
        request
            .metadata
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let text = |pattern: &Option<String>, value: &str| {
        pattern.as_deref().is_none_or(|p| allowlist_match(p, value))
    };
    text(&m.model, s.call.model)
        && text(&m.group, s.call.group)
        && text(&m.run_id, &request.run_id)
        && text(&m.step_id, &request.step_id)
        && text(&m.agent, metadata("agent_name"))
        && text(&m.purpose, metadata("purpose"))
        && m.call.is_none_or(|c| c == s.n)
        && m.last_user_contains.as_deref().is_none_or(|needle| {
            request
                .messages
                .iter()
                .rev()
                .find(|msg| msg.role == Role::User)
                .is_some_and(|msg| msg.content.contains(needle))
        })
        && m.has_tool_result.is_none_or(|wanted| {
            request.messages.iter().any(|msg| msg.role == Role::Tool) == wanted
        })
}

/// The allowlist matcher: exact name, `prefix*`, or `*`.
pub fn allowlist_match(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktsu_shared::project::{MockMatch, MockReplyKind};
    use ktsu_shared::wire::gateway::{CallMetadata, GatewayRequest};
    use serde_json::json;

    fn rule(when: MockMatch, times: Option<u64>, content: &str) -> MockRule {
        MockRule {
            when,
            times,
            reply: MockReply {
                kind: MockReplyKind::Content(content.into()),
                stop_reason: None,
                usage: None,
                latency_ms: None,
            },
        }
    }

    fn content(reply: Option<&MockReply>) -> Option<&str> {
        match reply.map(|r| &r.kind) {
            Some(MockReplyKind::Content(c)) => Some(c),
            _ => None,
        }
    }

    #[test]
    fn first_match_wins_and_times_run_out() {
        let script = Script::new(MockScript {
            rules: vec![
                rule(
                    MockMatch {
                        run_id: Some("run_*".into()),
                        agent: Some("triage-agent".into()),
                        purpose: Some("reflect".into()),
                        ..MockMatch::default()
                    },
                    None,
                    "reflect",
                ),
                rule(
                    MockMatch {
                        call: Some(2),
                        ..MockMatch::default()
                    },
                    Some(1),
                    "second",
                ),
                rule(
                    MockMatch {
                        has_tool_result: Some(true),
                        last_user_contains: Some("again".into()),
                        ..MockMatch::default()
                    },
                    None,
                    "tool",
                ),
                rule(
                    MockMatch {
                        model: Some("flaky".into()),
                        ..MockMatch::default()
                    },
                    None,
                    "flaky",
                ),
            ],
        });
        let request: GatewayRequest = serde_json::from_value(json!({
            "run_id": "run_1", "step_id": "s", "group": "g",
            "messages": [{"role": "user", "content": "try again"}, {"role": "tool", "tool_call_id": "t", "content": "x"}],
            "metadata": {"agent_name": "triage-agent", "purpose": "turn"}
        }))
        .unwrap();
        let metadata = CallMetadata::from_map(&request.metadata);
        let call = Call {
            call_id: "gw_1",
            request: &request,
            metadata: &metadata,
            group: "g",
            model: "default",
            max_tokens: 10,
            temperature: None,
            output_schema: None,
        };
        let at = |n| Subject { call: &call, n };
        assert_eq!(content(script.reply(&at(2))), Some("second"));
        assert_eq!(
            content(script.reply(&at(2))),
            Some("tool"),
            "`times: 1` is used up"
        );
        let flaky = Call {
            model: "flaky",
            ..call
        };
        let request2: GatewayRequest = serde_json::from_value(
            json!({"group": "g", "messages": [{"role": "user", "content": "x"}]}),
        )
        .unwrap();
        let flaky = Call {
            request: &request2,
            ..flaky
        };
        assert_eq!(
            content(script.reply(&Subject { call: &flaky, n: 1 })),
            Some("flaky")
        );
        let none = Call {
            model: "other",
            ..flaky
        };
        assert!(script.reply(&Subject { call: &none, n: 1 }).is_none());
    }

    #[test]
    fn matcher() {
        assert!(allowlist_match("*", ""));
        assert!(allowlist_match("run_*", "run_abc"));
        assert!(!allowlist_match("run_*", "xrun_abc"));
        assert!(allowlist_match("triage", "triage"));
        assert!(!allowlist_match("triage", "triage2"));
    }
}
