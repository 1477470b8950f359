//! The agent loop against a scripted gateway (runtime-gateway.md §3).

use crate::harness::*;
use crate::support::*;
use serde_json::{json, Value};

fn kv_server_answer() -> ToolFn {
    text_tool(|_, args| match args["key"].as_str() {
        Some("a") => "42".to_owned(),
        _ => "missing".to_owned(),
    })
}

/// §3.16: one tool call, then the answer.
#[actix_rt::test]
async fn tool_round_trip_then_answer() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(&["kv_get"], kv_server_answer()).await;
    let mut body = h.body();
    body["max_turns"] = json!(3);
    body["output_schema"] = json!({"type": "object", "required": ["answer"], "properties": {"answer": {"type": "integer"}}});
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url(), "params": {"region": "eu"}}]);
    h.gateway
        .tool_calls(&[("toolu_1", "kv_get", json!({"key": "a"}))])
        .text("{\"answer\":42}");
    let callback = h.run(&body).await;

    assert_eq!(callback["status"], "ok", "{callback}");
    assert_eq!(callback["output"], json!({"answer": 42}));
    assert_eq!(callback["error"], "");
    assert!(callback.get("error_code").is_none());
    assert_eq!(callback["attempt"], 1);
    assert_eq!(callback["runtime_id"], h.rt.runtime_id.as_str());
    let metrics = &callback["metrics"];
    assert_eq!(metrics["llm_calls"], 2);
    assert_eq!(metrics["tool_calls"], 1);
    assert_eq!(metrics["turns"], 2);
    assert!(
        metrics.get("corrections").is_none(),
        "corrections 0 is omitted: {metrics}"
    );
    assert_eq!(metrics["reflect_calls"], 0);
    assert_eq!(metrics["tokens_in"], 200);
    assert_eq!(metrics["tokens_out"], 40);
    assert_eq!(metrics["cache_read_tokens"], 20);
    assert_eq!(metrics["cost_usd"], 0.002);
    assert_eq!(metrics["model_resolved"], "mock/test-model");
    assert_eq!(metrics["models_used"], json!(["mock/test-model"]));

    let requests = h.gateway.requests().await;
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    let schema_text = serde_json::to_string_pretty(&body["output_schema"]).unwrap();
    assert_eq!(
        roles(first),
        [
            (
                "system".into(),
                format!("You are a tester.\n\n{T1}\n{schema_text}")
            ),
            ("user".into(), "Do the thing.".into())
        ]
    );
    assert_eq!(first["group"], "standard");
    assert_eq!(first["max_tokens"], 256);
    assert_eq!(first["run_id"], body["run_id"]);
    assert_eq!(first["step_id"], "step");
    assert_eq!(first["output_schema"], body["output_schema"]);
    assert!(first.get("tool_choice").is_none());
    assert!(first.get("temperature").is_none());
    assert_eq!(
        first["tools"],
        json!([{"name": "kv_get", "description": "The kv_get tool.",
                "input_schema": {"type": "object", "properties": {"key": {"type": "string"}}}}])
    );
    assert_eq!(
        first["metadata"],
        json!({"agent_name": "tester", "attempt": 1, "turn": 1, "purpose": "turn"})
    );
    assert!(first["timeout_s"].as_f64().unwrap() > 300.0);
    let second = &requests[1];
    assert_eq!(
        second["messages"][2],
        json!({"role": "assistant", "content": "",
        "tool_calls": [{"id": "toolu_1", "name": "kv_get", "arguments": {"key": "a"}}]})
    );
    assert_eq!(
        second["messages"][3],
        json!({"role": "tool", "content": "42", "tool_call_id": "toolu_1"})
    );
    assert_eq!(second["metadata"]["turn"], 2);

    // The transcript keeps the reference encoding.
    let messages = callback["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        messages[2]["content"],
        r#"[{"type":"tool_use","id":"toolu_1","name":"kv_get","input":{"key":"a"}}]"#
    );
    assert_eq!(
        messages[3],
        json!({"role": "user", "content": r#"[{"type":"tool_result","tool_use_id":"toolu_1","content":"42"}]"#})
    );
    assert_eq!(
        messages[4],
        json!({"role": "assistant", "content": "{\"answer\":42}"})
    );

    assert_eq!(mcp.calls(), [("kv_get".to_owned(), json!({"key": "a"}))]);
    assert_eq!(
        mcp.methods().await,
        [
            "initialize",
            "notifications/initialized",
            "tools/list",
            "tools/call",
            "DELETE"
        ]
    );
}

/// The last turn withholds tools after T2; a valid answer ends the leg.
#[actix_rt::test]
async fn forced_conclusion_on_the_last_turn() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(&["kv_get"], kv_server_answer()).await;
    let mut body = h.body();
    body["max_turns"] = json!(2);
    body["output_schema"] = answer_schema();
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url()}]);
    h.gateway
        .tool_calls(&[("t1", "kv_get", json!({"key": "a"}))])
        .text("{\"answer\": \"done\"}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    let requests = h.gateway.requests().await;
    let last = &requests[1];
    assert_eq!(last["tool_choice"], "none");
    assert_eq!(
        last["tools"].as_array().unwrap().len(),
        1,
        "tools stay for the history"
    );
    let messages = roles(last);
    assert_eq!(
        messages.last().unwrap(),
        &("user".to_owned(), T2.to_owned())
    );
    assert_eq!(last["metadata"]["purpose"], "turn");
}

/// Tool calls on a withheld turn are refused with T7 and answered by a grace call; tools stay
/// withheld and T2 is not repeated.
#[actix_rt::test]
async fn tool_calls_on_the_last_turn_get_a_grace_call() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(&["kv_get"], kv_server_answer()).await;
    let mut body = h.body();
    body["max_turns"] = json!(1);
    body["output_schema"] = answer_schema();
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url()}]);
    h.gateway
        .tool_calls(&[
            ("t1", "kv_get", json!({"key": "a"})),
            ("t2", "kv_get", json!({"key": "b"})),
        ])
        .text("{\"answer\": \"late\"}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    assert_eq!(callback["output"], json!({"answer": "late"}));
    assert!(mcp.calls().is_empty(), "nothing runs on a withheld turn");
    let requests = h.gateway.requests().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["tool_choice"], "none");
    let grace = &requests[1];
    assert_eq!(grace["tool_choice"], "none");
    assert_eq!(grace["metadata"]["purpose"], "grace");
    let messages = grace["messages"].as_array().unwrap();
    assert_eq!(
        messages[4],
        json!({"role": "tool", "content": T7, "tool_call_id": "t1", "is_error": true})
    );
    assert_eq!(
        messages[5],
        json!({"role": "tool", "content": T7, "tool_call_id": "t2", "is_error": true})
    );
    assert_eq!(
        roles(grace).iter().filter(|(_, c)| c == T2).count(),
        1,
        "T2 is not repeated"
    );
    assert_eq!(callback["metrics"]["turns"], 2);
    assert_eq!(callback["metrics"]["corrections"], 1);
}

/// Invalid JSON → T3 correction → a valid answer.
#[actix_rt::test]
async fn invalid_json_is_corrected() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["output_schema"] = answer_schema();
    h.gateway
        .text("I think the answer is yes.")
        .text("Sure:\n```json\n{\"answer\": \"yes\"}\n```");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    assert_eq!(callback["output"], json!({"answer": "yes"}));
    assert_eq!(callback["metrics"]["corrections"], 1);
    let requests = h.gateway.requests().await;
    assert!(requests[0].get("tools").is_none(), "no tools: omitted");
    let second = roles(&requests[1]);
    assert_eq!(
        second[2],
        ("assistant".into(), "I think the answer is yes.".into())
    );
    assert_eq!(second[3], ("user".into(), t3("no JSON object found")));
    assert_eq!(requests[1]["metadata"]["purpose"], "correction");
}

/// Schema violations → T4 listing them → a valid answer.
#[actix_rt::test]
async fn schema_violations_are_listed_and_corrected() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["output_schema"] = json!({
        "type": "object", "required": ["category", "priority"],
        "properties": {"category": {"enum": ["billing", "technical"]}, "priority": {"type": "integer"}}
    });
    h.gateway
        .text("{\"category\": \"shipping\"}")
        .text("{\"category\": \"billing\", \"priority\": 1}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    let requests = h.gateway.requests().await;
    let correction = &roles(&requests[1])[3].1;
    assert!(correction.starts_with(T4_HEAD), "{correction}");
    let lines: Vec<&str> = correction.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{correction}");
    assert!(
        lines.iter().any(|l| l.starts_with("- /category: ")),
        "{correction}"
    );
    assert!(
        lines.contains(&"- /priority: missing required property \"priority\""),
        "{correction}"
    );
}

/// Truncated at the token limit → T5.
#[actix_rt::test]
async fn truncated_replies_get_t5() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["output_schema"] = answer_schema();
    h.gateway
        .push(wiremock::ResponseTemplate::new(200).set_body_json(reply(
            "{\"answer\": \"very lo",
            json!([]),
            "max_tokens",
        )))
        .text("{\"answer\": \"short\"}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    let requests = h.gateway.requests().await;
    assert_eq!(roles(&requests[1])[3], ("user".into(), T5.into()));
}

/// Still calling tools after max_turns (and the grace call) → max_turns_exceeded.
#[actix_rt::test]
async fn max_turns_exceeded_while_calling_tools() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(&["kv_get"], kv_server_answer()).await;
    let mut body = h.body();
    body["max_turns"] = json!(2);
    body["output_schema"] = answer_schema();
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url()}]);
    h.gateway
        .text("not json")
        .tool_calls(&[("t2", "kv_get", json!({"key": "a"}))])
        .tool_calls(&[("t3", "kv_get", json!({"key": "a"}))]);
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error"], "max_turns_exceeded");
    assert_eq!(callback["error_code"], "max_turns_exceeded");
    assert_eq!(callback["error_detail"], json!({"max_turns": 2}));
    assert_eq!(
        callback["raw_output"], "not json",
        "the last invalid text reply"
    );
    assert_eq!(callback["metrics"]["turns"], 3, "2 turns + 1 grace call");
    assert_eq!(h.gateway.requests().await.len(), 3);
}

/// Invalid text to the end → output_invalid with the reason and raw_output.
#[actix_rt::test]
async fn output_invalid_after_grace() {
    let mut h = Harness::with(|s| s.output_grace_turns = 2).await;
    let mut body = h.body();
    body["max_turns"] = json!(1);
    body["output_schema"] = answer_schema();
    h.gateway
        .text("nope")
        .text("[1, 2]")
        .text("{\"answer\": 5}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error_code"], "output_invalid");
    assert_eq!(callback["raw_output"], "{\"answer\": 5}");
    let error = callback["error"].as_str().unwrap();
    assert!(
        error.starts_with("output_invalid: 1 schema violation: /answer: "),
        "{error}"
    );
    assert_eq!(callback["error_detail"]["kind"], "schema");
    assert_eq!(
        callback["error_detail"]["violations"][0]["pointer"],
        "/answer"
    );
    let requests = h.gateway.requests().await;
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1]["metadata"]["purpose"], "grace");
    assert_eq!(requests[2]["metadata"]["purpose"], "grace");
    assert_eq!(
        roles(&requests[2])[5].1,
        t3("the top-level value is not an object")
    );
    assert_eq!(callback["metrics"]["corrections"], 3);
}

/// Without grace, a bad first answer on a one-turn leg fails at once.
#[actix_rt::test]
async fn empty_reply_without_grace_fails() {
    let mut h = Harness::with(|s| s.output_grace_turns = 0).await;
    let mut body = h.body();
    body["max_turns"] = json!(1);
    h.gateway.text("");
    let callback = h.run(&body).await;
    assert_eq!(callback["error"], "output_invalid: empty reply");
    assert_eq!(
        callback["error_detail"],
        json!({"kind": "empty", "violations": []})
    );
    assert!(
        callback.get("raw_output").is_none(),
        "an empty raw_output is omitted"
    );
}

/// Reflect taken: confidence below the threshold; the reflected output replaces the draft.
#[actix_rt::test]
async fn reflect_taken_replaces_the_draft() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["output_schema"] = answer_schema();
    body["reflect"] = json!("Check your answer.");
    body["confidence_threshold"] = json!(0.8);
    h.gateway
        .text("{\"answer\": \"draft\", \"ktsu_confidence\": 0.5}")
        .text("{\"answer\": \"better\", \"ktsu_confidence\": 0.6}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    assert_eq!(
        callback["output"],
        json!({"answer": "better", "ktsu_confidence": 0.6})
    );
    assert_eq!(callback["metrics"]["reflect_calls"], 1);
    assert_eq!(callback["metrics"]["reflected"], true);
    assert_eq!(callback["metrics"]["llm_calls"], 2);
    assert_eq!(
        callback["metrics"]["turns"], 1,
        "reflect calls are not turns"
    );
    let requests = h.gateway.requests().await;
    let reflect = &requests[1];
    assert_eq!(reflect["metadata"]["purpose"], "reflect");
    assert!(reflect.get("tools").is_none());
    let messages = roles(reflect);
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0].0, "system");
    assert!(messages[0].1.contains(T1), "the schema instruction stays");
    assert_eq!(messages[1], ("user".into(), "Do the thing.".into()));
    assert_eq!(
        messages[2],
        (
            "assistant".into(),
            r#"{"answer":"draft","ktsu_confidence":0.5}"#.into()
        )
    );
    assert_eq!(
        messages[3],
        ("user".into(), format!("Check your answer.\n\n{T9}"))
    );
    // Reflect messages are not added to the transcript.
    assert_eq!(callback["messages"].as_array().unwrap().len(), 3);
}

/// Reflect not taken: confidence at the threshold.
#[actix_rt::test]
async fn reflect_not_taken_at_the_threshold() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["reflect"] = json!("Check your answer.");
    body["confidence_threshold"] = json!(0.8);
    h.gateway
        .text("{\"answer\": \"sure\", \"ktsu_confidence\": 0.8}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok");
    assert_eq!(callback["metrics"]["reflect_calls"], 0);
    assert!(callback["metrics"].get("reflected").is_none());
    assert_eq!(h.gateway.requests().await.len(), 1);
}

/// An invalid reflect reply gets one correction; still invalid → reflect_output_invalid.
#[actix_rt::test]
async fn reflect_correction_then_failure() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["output_schema"] = answer_schema();
    body["reflect"] = json!("Again.");
    body["confidence_threshold"] = json!(0.9);
    h.gateway
        .text("{\"answer\": \"draft\"}")
        .text("no idea")
        .text("{\"wrong\": 1}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error"], "reflect_output_invalid");
    assert_eq!(callback["error_code"], "reflect_output_invalid");
    assert_eq!(callback["raw_output"], "{\"wrong\": 1}");
    assert_eq!(callback["error_detail"]["kind"], "schema");
    assert_eq!(callback["metrics"]["reflect_calls"], 2);
    let requests = h.gateway.requests().await;
    assert_eq!(requests[2]["metadata"]["purpose"], "reflect_correction");
    let messages = roles(&requests[2]);
    assert_eq!(messages.len(), 6);
    assert_eq!(messages[4], ("assistant".into(), "no idea".into()));
    assert_eq!(messages[5], ("user".into(), t3("no JSON object found")));
}

/// Fatal and skip signals pass through unchanged and are never reflected (the orchestrator
/// evaluates them).
#[actix_rt::test]
async fn reserved_signals_pass_through_unreflected() {
    let mut h = Harness::start().await;
    let signals = [
        json!({"answer": "x", "ktsu_injection_attempt": true}),
        json!({"answer": "x", "ktsu_untrusted_content": true}),
        json!({"answer": "x", "ktsu_low_quality": true}),
        json!({"answer": "x", "ktsu_needs_human": true, "ktsu_confidence": 0.1}),
        json!({"answer": "x", "ktsu_skip_reason": "nothing to triage"}),
    ];
    for draft in signals {
        let mut body = h.body();
        body["output_schema"] = answer_schema();
        body["reflect"] = json!("Check.");
        body["confidence_threshold"] = json!(0.9);
        h.gateway.text(&draft.to_string());
        let callback = h.run(&body).await;
        assert_eq!(callback["status"], "ok", "{draft}: {callback}");
        assert_eq!(callback["output"], draft);
        assert_eq!(callback["metrics"]["reflect_calls"], 0, "{draft}");
    }
    assert_eq!(
        h.gateway.requests().await.len(),
        5,
        "no reflect call at all"
    );
}

/// Two calls to tools outside the routing table fail the leg; the first is a visible error.
#[actix_rt::test]
async fn second_unknown_tool_call_fails_the_leg() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(&["kv_get", "kv_set"], kv_server_answer()).await;
    let mut body = h.body();
    body["tool_servers"] =
        json!([{"name": "kv", "url": mcp.url(), "allowlist": ["kv_get", "kv_s*"]}]);
    h.gateway
        .tool_calls(&[("t1", "rm_rf", json!({}))])
        .tool_calls(&[
            ("t2", "kv_get", json!({"key": "a"})),
            ("t3", "drop_db", json!({})),
        ]);
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error"], "tool_not_permitted: drop_db");
    assert_eq!(callback["error_code"], "tool_not_permitted");
    assert_eq!(callback["error_detail"], json!({"tool": "drop_db"}));
    let requests = h.gateway.requests().await;
    assert_eq!(
        requests[1]["messages"][3],
        json!({"role": "tool", "content": t6("rm_rf", "kv_get, kv_set"), "tool_call_id": "t1", "is_error": true})
    );
    assert_eq!(mcp.calls().len(), 1, "the permitted call in between ran");
}

/// Tool errors the model can see: isError, a JSON-RPC error (T11).
#[actix_rt::test]
async fn tool_errors_reach_the_model() {
    let mut h = Harness::start().await;
    let mcp = FakeMcp::start(
        &["flaky"],
        std::sync::Arc::new(|_: &str, args: &Value| {
            if args["key"] == "bad" {
                json!({"content": [{"type": "text", "text": "no such key"}], "isError": true})
            } else {
                json!({"content": [], "structuredContent": {"n": 1}})
            }
        }),
    )
    .await;
    let mut body = h.body();
    body["tool_servers"] = json!([{"name": "kv", "url": mcp.url()}]);
    h.gateway
        .tool_calls(&[
            ("t1", "flaky", json!({"key": "bad"})),
            ("t2", "flaky", json!(null)),
        ])
        .text("{\"ok\": true}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    assert_eq!(callback["metrics"]["tool_calls"], 2);
    assert_eq!(callback["metrics"]["tool_errors"], 1);
    let requests = h.gateway.requests().await;
    let messages = requests[1]["messages"].as_array().unwrap();
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "no such key", "tool_call_id": "t1", "is_error": true})
    );
    assert_eq!(
        messages[4],
        json!({"role": "tool", "content": "{\"n\":1}", "tool_call_id": "t2"})
    );
    assert_eq!(
        mcp.calls()[1].1,
        json!({}),
        "null arguments are sent as {{}}"
    );
}

/// Budget: every call carries the root budget with the leg's spend; at the limit the leg fails
/// before calling.
#[actix_rt::test]
async fn budget_is_forwarded_and_checked_before_each_call() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["budget"] =
        json!({"run_id": "run_root000000000001", "limit_usd": 0.0025, "spent_usd": 0.001});
    body["output_schema"] = answer_schema();
    h.gateway.text("bad").text("bad again").text("never sent");
    let callback = h.run(&body).await;
    let requests = h.gateway.requests().await;
    assert_eq!(
        requests.len(),
        2,
        "the third call is refused before it is made"
    );
    assert_eq!(
        requests[0]["budget"],
        json!({"run_id": "run_root000000000001", "limit_usd": 0.0025, "spent_usd": 0.001})
    );
    assert_eq!(requests[1]["budget"]["spent_usd"], 0.002);
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error_code"], "budget_exceeded");
    assert_eq!(
        callback["error"],
        "budget_exceeded: spent 0.003 of 0.0025 USD"
    );
    assert_eq!(callback["error_detail"]["limit_usd"], 0.0025);
}

/// A gateway that is slow beyond the step deadline: step_timeout.
#[actix_rt::test]
async fn step_deadline() {
    let mut h = Harness::start().await;
    let mut body = h.body();
    body["timeouts"] = json!({"step_s": 0.5});
    h.gateway
        .text_after(std::time::Duration::from_secs(10), "{}");
    let started = std::time::Instant::now();
    let callback = h.run(&body).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(callback["status"], "failed");
    assert_eq!(callback["error"], "step_timeout: exceeded 0.5 s");
    assert_eq!(callback["error_code"], "step_timeout");
    let requests = h.gateway.requests().await;
    assert!(requests[0]["timeout_s"].as_f64().unwrap() <= 0.5);
}
