//! JSON-RPC 2.0 messages as MCP uses them: requests with integer ids from this client, and the
//! classification of whatever the server sends (runtime-gateway.md §4.2, §4.7).

use super::error::RpcErrorObject;
use serde_json::{json, Map, Value};

/// JSON-RPC "method not found".
pub const METHOD_NOT_FOUND: i64 = -32601;

/// One message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to one of our requests.
    Response {
        id: Value,
        outcome: Result<Value, RpcErrorObject>,
    },
    /// A request the server makes to us (`ping`, `sampling/createMessage`, …).
    Request {
        id: Value,
        method: String,
    },
    Notification {
        method: String,
    },
    /// Not a JSON-RPC message.
    Invalid,
}

/// A request of ours: `{"jsonrpc":"2.0","id":<id>,"method":…,"params"?:…}`.
pub fn request(id: u64, method: &str, params: Option<Value>) -> Value {
    let mut message = Map::with_capacity(4);
    message.insert("jsonrpc".into(), "2.0".into());
    message.insert("id".into(), id.into());
    message.insert("method".into(), method.into());
    if let Some(params) = params {
        message.insert("params".into(), params);
    }
    Value::Object(message)
}

/// A notification of ours (no id).
pub fn notification(method: &str, params: Option<Value>) -> Value {
    let mut message = Map::with_capacity(3);
    message.insert("jsonrpc".into(), "2.0".into());
    message.insert("method".into(), method.into());
    if let Some(params) = params {
        message.insert("params".into(), params);
    }
    Value::Object(message)
}

/// Our answer to a server request: `{}` for `ping`, "method not found" for everything else.
pub fn answer_server_request(id: &Value, method: &str) -> Value {
    if method == "ping" {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": METHOD_NOT_FOUND, "message": "Method not found"}})
    }
}

/// The messages of one body or event: a JSON array is a batch (2025-03-26), processed element by
/// element.
pub fn messages_of(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

/// What a server message is.
pub fn classify(message: Value) -> Incoming {
    let Value::Object(mut map) = message else {
        return Incoming::Invalid;
    };
    let method = match map.get("method") {
        Some(Value::String(method)) => Some(method.clone()),
        Some(_) => return Incoming::Invalid,
        None => None,
    };
    let id = map.remove("id").filter(|id| !id.is_null());
    match (method, id) {
        (Some(method), Some(id)) => Incoming::Request { id, method },
        (Some(method), None) => Incoming::Notification { method },
        (None, Some(id)) => {
            if let Some(error) = map.remove("error") {
                Incoming::Response {
                    id,
                    outcome: Err(error_object(&error)),
                }
            } else if let Some(result) = map.remove("result") {
                Incoming::Response {
                    id,
                    outcome: Ok(result),
                }
            } else {
                Incoming::Invalid
            }
        }
        (None, None) => Incoming::Invalid,
    }
}

/// Whether a response id is ours (`ours` was sent as an integer; some servers echo it as a
/// float or a string).
pub fn id_is(id: &Value, ours: u64) -> bool {
    match id {
        Value::Number(n) => n.as_u64() == Some(ours) || n.as_f64() == Some(ours as f64),
        Value::String(text) => text.parse::<u64>().ok() == Some(ours),
        _ => false,
    }
}

/// The id of a response as our integer, when it is one.
pub fn id_number(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

fn error_object(error: &Value) -> RpcErrorObject {
    RpcErrorObject {
        code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_requests_and_notifications() {
        assert_eq!(
            request(3, "tools/list", None),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
        );
        assert_eq!(
            request(4, "tools/list", Some(json!({"cursor": "c"}))).to_string(),
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"c"}}"#
        );
        assert_eq!(
            notification("notifications/initialized", None),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
        );
    }

    #[test]
    fn classifies_server_messages() {
        assert_eq!(
            classify(json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": []}})),
            Incoming::Response {
                id: json!(2),
                outcome: Ok(json!({"tools": []}))
            }
        );
        assert_eq!(
            classify(
                json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "boom"}})
            ),
            Incoming::Response {
                id: json!(2),
                outcome: Err(RpcErrorObject {
                    code: -32603,
                    message: "boom".into()
                })
            }
        );
        assert_eq!(
            classify(json!({"jsonrpc": "2.0", "id": "p1", "method": "ping"})),
            Incoming::Request {
                id: json!("p1"),
                method: "ping".into()
            }
        );
        assert_eq!(
            classify(json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})),
            Incoming::Notification {
                method: "notifications/progress".into()
            }
        );
        for invalid in [json!(1), json!({"id": 1}), json!({"method": 5}), json!({})] {
            assert_eq!(classify(invalid.clone()), Incoming::Invalid, "{invalid}");
        }
    }

    #[test]
    fn ids_and_answers() {
        assert!(id_is(&json!(7), 7));
        assert!(id_is(&json!(7.0), 7));
        assert!(id_is(&json!("7"), 7));
        assert!(!id_is(&json!(8), 7));
        assert!(!id_is(&json!(null), 7));
        assert_eq!(id_number(&json!("9")), Some(9));
        assert_eq!(
            answer_server_request(&json!(5), "ping"),
            json!({"jsonrpc": "2.0", "id": 5, "result": {}})
        );
        assert_eq!(
            answer_server_request(&json!(6), "sampling/createMessage")["error"]["code"],
            -32601
        );
        assert_eq!(messages_of(json!([1, 2])).len(), 2);
        assert_eq!(messages_of(json!({"a": 1})).len(), 1);
    }
}
