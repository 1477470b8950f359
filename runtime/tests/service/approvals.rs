//! Approvals (runtime-gateway.md §3.5, §3.7): the pending_approval checkpoint and the resumes.

use crate::harness::*;
use crate::support::*;
use serde_json::{json, Value};

struct Crm {
    mcp: FakeMcp,
}

impl Crm {
    async fn start() -> Crm {
        Crm {
            mcp: FakeMcp::start(
                &["kv_get", "delete_record"],
                text_tool(|name, args| format!("{name} done with {args}")),
            )
            .await,
        }
    }

    fn servers(&self, on_reject: &str) -> Value {
        json!([{
            "name": "crm", "url": self.mcp.url(), "allowlist": null,
            "auth_header": "X-Api-Key", "auth_value": "crm-secret-key-123",
            "approval_rules": [{"pattern": "delete_*", "on_reject": on_reject, "timeout_ms": 1800000, "timeout_behavior": "reject"}]
        }])
    }

    fn executed(&self, name: &str) -> Vec<Value> {
        self.mcp
            .calls()
            .into_iter()
            .filter(|(n, _)| n == name)
            .map(|(_, args)| args)
            .collect()
    }
}

/// The checkpoint of a reply with one free and two gated calls.
async fn checkpoint(h: &mut Harness, crm: &Crm, on_reject: &str) -> (Value, Value) {
    let mut body = h.body();
    body["tool_servers"] = crm.servers(on_reject);
    body["output_schema"] = answer_schema();
    h.gateway.tool_calls(&[
        ("t1", "kv_get", json!({"key": "a"})),
        ("t2", "delete_record", json!({"id": 7})),
        ("t3", "delete_record", json!({"id": 8})),
    ]);
    let callback = h.run(&body).await;
    (body, callback)
}

/// The same step, next attempt, resumed from `checkpoint` with the decisions.
fn resume(
    body: &Value,
    h: &Harness,
    messages: &Value,
    attempt: u32,
    approved: &[&str],
    rejected: &[&str],
) -> Value {
    let mut next = body.clone();
    let run = body["run_id"].as_str().unwrap();
    next["attempt"] = json!(attempt);
    next["callback_url"] = json!(h.sink.callback_url(run, "step", attempt));
    next["messages"] = messages.clone();
    next["approved_tool_calls"] = json!(approved);
    next["rejected_tool_calls"] = json!(rejected);
    next["is_resume"] = json!(true);
    next
}

#[actix_rt::test]
async fn checkpoint_lists_every_gated_call_and_redacts_the_request() {
    let mut h = Harness::start().await;
    let crm = Crm::start().await;
    let (body, callback) = checkpoint(&mut h, &crm, "recover").await;
    assert_eq!(callback["status"], "pending_approval", "{callback}");
    assert_eq!(callback["error"], "");
    assert!(callback.get("error_code").is_none());
    assert_eq!(
        callback["pending_approval"],
        json!({"tool_name": "delete_record", "tool_use_id": "t2", "arguments": {"id": 7},
               "on_reject": "recover", "timeout_ms": 1800000, "timeout_behavior": "reject", "server": "crm"})
    );
    let ids: Vec<&str> = callback["pending_approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["tool_use_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["t2", "t3"]);
    let original = &callback["original_request"];
    assert!(original.get("messages").is_none());
    assert_eq!(original["tool_servers"][0]["auth_value"], "[REDACTED]");
    assert_eq!(original["run_id"], callback["run_id"]);
    // The request as received: the leg's working copies of the prompts and schema are back.
    for field in [
        "system",
        "user_message",
        "output_schema",
        "callback_url",
        "model",
    ] {
        assert_eq!(original[field], body[field], "{field}");
    }
    assert!(!callback.to_string().contains("crm-secret-key-123"));
    // The transcript: the assistant with all three calls, then the result of the free one.
    let messages = callback["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert!(messages[2]["content"]
        .as_str()
        .unwrap()
        .contains("\"id\":\"t3\""));
    assert!(messages[3]["content"]
        .as_str()
        .unwrap()
        .contains("\"tool_use_id\":\"t1\""));
    assert_eq!(crm.executed("kv_get").len(), 1);
    assert!(
        crm.executed("delete_record").is_empty(),
        "gated calls never run"
    );
    assert_eq!(h.gateway.requests().await.len(), 1);
    assert_eq!(callback["metrics"]["tool_calls"], 1);
}

/// Approve the first gated call: it runs and the second is raised again without a model call;
/// approve that one: it runs and the loop continues. Re-sent approvals never run a call twice.
#[actix_rt::test]
async fn approved_resumes_one_call_at_a_time() {
    let mut h = Harness::start().await;
    let crm = Crm::start().await;
    let (body, first) = checkpoint(&mut h, &crm, "recover").await;

    let second = h
        .run(&resume(&body, &h, &first["messages"], 2, &["t2"], &[]))
        .await;
    assert_eq!(second["status"], "pending_approval", "{second}");
    assert_eq!(second["pending_approval"]["tool_use_id"], "t3");
    assert_eq!(second["pending_approvals"].as_array().unwrap().len(), 1);
    assert_eq!(second["is_resume"], true);
    assert_eq!(second["attempt"], 2);
    assert_eq!(crm.executed("delete_record"), [json!({"id": 7})]);
    assert_eq!(
        h.gateway.requests().await.len(),
        1,
        "no model call while calls are gated"
    );

    h.gateway.text("{\"answer\": \"deleted both\"}");
    let third = h
        .run(&resume(
            &body,
            &h,
            &second["messages"],
            3,
            &["t2", "t3"],
            &[],
        ))
        .await;
    assert_eq!(third["status"], "ok", "{third}");
    assert_eq!(third["output"], json!({"answer": "deleted both"}));
    assert_eq!(
        crm.executed("delete_record"),
        [json!({"id": 7}), json!({"id": 8})],
        "t2 ran once even though its approval was sent twice"
    );
    let requests = h.gateway.requests().await;
    let last = requests.last().unwrap();
    let tool_results: Vec<&Value> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .collect();
    assert_eq!(tool_results.len(), 3);
    assert_eq!(
        last["metadata"]["turn"], 1,
        "a resume starts a fresh turn count"
    );
}

/// Rejected with recover: the orchestrator appends the rejection result; the call never runs and
/// the model continues.
#[actix_rt::test]
async fn rejected_with_recover_continues_without_the_call() {
    let mut h = Harness::start().await;
    let crm = Crm::start().await;
    let mut body = h.body();
    body["tool_servers"] = crm.servers("recover");
    h.gateway
        .tool_calls(&[("t9", "delete_record", json!({"id": 1}))]);
    let first = h.run(&body).await;
    assert_eq!(first["status"], "pending_approval");

    // What the orchestrator sends back (orchestrator.md §7.1, reference-format checkpoint).
    let rejection = format!("{T8} Reviewer comment: not this one");
    let mut messages = first["messages"].as_array().unwrap().clone();
    messages.push(json!({"role": "user", "content": json!([{"type": "tool_result", "tool_use_id": "t9", "content": rejection}]).to_string()}));
    h.gateway.text("{\"answer\": \"kept the record\"}");
    let second = h
        .run(&resume(&body, &h, &Value::Array(messages), 2, &[], &["t9"]))
        .await;
    assert_eq!(second["status"], "ok", "{second}");
    assert!(crm.executed("delete_record").is_empty());
    let requests = h.gateway.requests().await;
    let sent = &requests[1]["messages"].as_array().unwrap()[3];
    assert_eq!(sent["role"], "tool");
    assert_eq!(sent["tool_call_id"], "t9");
    assert_eq!(sent["content"], rejection.as_str());
}

/// A rejection the orchestrator did not append itself gets the T8 result from the runtime.
#[actix_rt::test]
async fn rejected_without_appended_result_gets_t8() {
    let mut h = Harness::start().await;
    let crm = Crm::start().await;
    let mut body = h.body();
    body["tool_servers"] = crm.servers("recover");
    h.gateway
        .tool_calls(&[("t9", "delete_record", json!({"id": 1}))]);
    let first = h.run(&body).await;
    h.gateway.text("{\"answer\": \"ok\"}");
    let second = h
        .run(&resume(&body, &h, &first["messages"], 2, &[], &["t9"]))
        .await;
    assert_eq!(second["status"], "ok", "{second}");
    let requests = h.gateway.requests().await;
    assert_eq!(
        requests[1]["messages"][3],
        json!({"role": "tool", "content": T8, "tool_call_id": "t9", "is_error": true})
    );
    assert!(crm.executed("delete_record").is_empty());
}

/// Rejected with fail: the checkpoint says so; the orchestrator fails the step and never
/// resumes, so the call never runs.
#[actix_rt::test]
async fn rejected_with_fail_is_announced_in_the_checkpoint() {
    let mut h = Harness::start().await;
    let crm = Crm::start().await;
    let mut body = h.body();
    body["tool_servers"] = json!([{
        "name": "crm", "url": crm.mcp.url(),
        "approval_rules": [{"pattern": "delete_record", "on_reject": "fail", "timeout_ms": 0, "timeout_behavior": ""}]
    }]);
    h.gateway
        .tool_calls(&[("t5", "delete_record", json!({"id": 3}))]);
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "pending_approval");
    assert_eq!(callback["pending_approval"]["on_reject"], "fail");
    assert_eq!(callback["pending_approval"]["timeout_behavior"], "fail");
    assert_eq!(callback["pending_approval"]["timeout_ms"], 0);
    assert!(crm.executed("delete_record").is_empty());
}

/// An approved call is still checked against the routing table.
#[actix_rt::test]
async fn approved_call_outside_the_allowlist_is_refused() {
    let mut h = Harness::start().await;
    let crm = Crm::start().await;
    let mut body = h.body();
    body["tool_servers"] = json!([{"name": "crm", "url": crm.mcp.url(), "allowlist": ["kv_get"]}]);
    body["messages"] = json!([
        {"role": "system", "content": "S"}, {"role": "user", "content": "U"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "x1", "name": "delete_record", "arguments": {"id": 1}}]}
    ]);
    body["approved_tool_calls"] = json!(["x1"]);
    body["is_resume"] = json!(true);
    h.gateway.text("{\"answer\": \"fine\"}");
    let callback = h.run(&body).await;
    assert_eq!(callback["status"], "ok", "{callback}");
    assert!(crm.executed("delete_record").is_empty());
    let requests = h.gateway.requests().await;
    assert_eq!(
        requests[0]["messages"][3]["content"],
        t6("delete_record", "kv_get")
    );
}
