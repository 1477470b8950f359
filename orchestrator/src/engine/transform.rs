//! Transform steps (orchestrator.md §5.4): pure data operations run inside the RunActor.
//! Inputs are deep-merged, ops run in order on the previous result, the output is
//! `{"result": …}`.

use ktsu_shared::project::{OpKind, SortOrder, TransformOp};
use ktsu_shared::schema::json_type_name;
use ktsu_shared::template::format_text;
use serde_json::Value;
use std::cmp::Ordering;

/// Deep merge `m(a, b)`: objects key-wise and recursively (`b` wins on scalars), arrays
/// concatenated, `null` on the left gives `b`, anything else gives `b`.
pub fn deep_merge(a: Value, b: Value) -> Value {
    match (a, b) {
        (Value::Object(mut left), Value::Object(right)) => {
            for (k, v) in right {
                let merged = match left.remove(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => v,
                };
                left.insert(k, merged);
            }
            Value::Object(left)
        }
        (Value::Array(mut left), Value::Array(right)) => {
            left.extend(right);
            Value::Array(left)
        }
        (_, b) => b,
    }
}

/// Merges the input values in list order (none → `null`, one → that value).
pub fn merge_inputs(inputs: Vec<Value>) -> Value {
    let mut iter = inputs.into_iter();
    let Some(first) = iter.next() else {
        return Value::Null;
    };
    iter.fold(first, deep_merge)
}

/// A transform failure: `transform op <k> (<op>): <detail>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError(pub String);

/// Runs the ops on `data`. `step_output` gives the visible output of a step id (for `merge`).
pub fn run_ops(
    mut data: Value,
    ops: &[TransformOp],
    step_output: &dyn Fn(&str) -> Value,
) -> Result<Value, TransformError> {
    for (i, op) in ops.iter().enumerate() {
        let fail = |detail: String| {
            TransformError(format!(
                "transform op {} ({}): {detail}",
                i + 1,
                op.kind.name()
            ))
        };
        data = apply(data, &op.kind, step_output).map_err(fail)?;
    }
    Ok(data)
}

fn expect_array(data: Value) -> Result<Vec<Value>, String> {
    match data {
        Value::Array(items) => Ok(items),
        other => Err(format!("expected an array, got {}", json_type_name(&other))),
    }
}

/// The sort/deduplicate key text of a value: strings as is, other values compact JSON.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => format_text(other),
    }
}

fn apply(data: Value, op: &OpKind, step_output: &dyn Fn(&str) -> Value) -> Result<Value, String> {
    match op {
        OpKind::Merge(ids) => Ok(ids
            .iter()
            .fold(data, |acc, id| deep_merge(acc, step_output(&id.value)))),
        OpKind::Filter(expr) => {
            let items = match data {
                Value::Array(items) => items,
                Value::Null => Vec::new(),
                other => vec![other],
            };
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                if expr.value.is_true_on(&item).map_err(|e| e.message)? {
                    kept.push(item);
                }
            }
            Ok(Value::Array(kept))
        }
        OpKind::Map(expr) => match data {
            Value::Array(items) => items
                .iter()
                .map(|item| expr.value.eval_on(item).map_err(|e| e.message))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => expr.value.eval_on(&other).map_err(|e| e.message),
        },
        OpKind::Sort { field, order } => {
            let items = expect_array(data)?;
            let mut keyed: Vec<(Value, Value)> = Vec::with_capacity(items.len());
            for item in items {
                let key = field.value.eval_on(&item).map_err(|e| e.message)?;
                keyed.push((key, item));
            }
            // Stable sort; null keys last in both orders; `desc` reverses non-null keys only.
            keyed.sort_by(|(a, _), (b, _)| match (a.is_null(), b.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    let ord = compare_keys(a, b);
                    if *order == SortOrder::Desc {
                        ord.reverse()
                    } else {
                        ord
                    }
                }
            });
            Ok(Value::Array(keyed.into_iter().map(|(_, v)| v).collect()))
        }
        OpKind::Flatten => {
            let items = expect_array(data)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Array(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            Ok(Value::Array(out))
        }
        OpKind::Deduplicate(field) => {
            let items = expect_array(data)?;
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let key = field.value.eval_on(&item).map_err(|e| e.message)?;
                if key.is_null() || seen.insert(key_text(&key)) {
                    out.push(item);
                }
            }
            Ok(Value::Array(out))
        }
    }
}

/// Two numbers compare numerically; anything else by the code points of its string form.
fn compare_keys(a: &Value, b: &Value) -> Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => {
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        _ => key_text(a).cmp(&key_text(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ktsu_shared::diag::Pos;
    use ktsu_shared::project::Spanned;
    use ktsu_shared::template::Expr;
    use serde_json::json;
    use std::collections::HashMap;

    fn e(src: &str) -> Spanned<Expr> {
        Spanned::new(Expr::parse_bare(src).unwrap(), Pos::default(), "")
    }

    fn op(kind: OpKind) -> TransformOp {
        TransformOp {
            pos: Pos::default(),
            path: String::new(),
            kind,
        }
    }

    fn filter(x: &str) -> TransformOp {
        op(OpKind::Filter(e(x)))
    }
    fn map(x: &str) -> TransformOp {
        op(OpKind::Map(e(x)))
    }
    fn sort(x: &str, order: SortOrder) -> TransformOp {
        op(OpKind::Sort { field: e(x), order })
    }
    fn dedup(x: &str) -> TransformOp {
        op(OpKind::Deduplicate(e(x)))
    }
    fn merge(ids: &[&str]) -> TransformOp {
        op(OpKind::Merge(
            ids.iter()
                .map(|i| Spanned::new(i.to_string(), Pos::default(), ""))
                .collect(),
        ))
    }

    fn run(data: Value, ops: &[TransformOp], steps: &HashMap<&str, Value>) -> Value {
        run_ops(data, ops, &|id| {
            steps.get(id).cloned().unwrap_or(Value::Null)
        })
        .unwrap()
    }

    #[test]
    fn t1_filter_and_sort() {
        let fetch =
            json!({"items":[{"id":1,"score":0.9},{"id":2,"score":0.3},{"id":3,"score":0.7}]});
        let data = fetch["items"].clone();
        let out = run(
            data,
            &[filter("score > `0.5`"), sort("score", SortOrder::Desc)],
            &HashMap::new(),
        );
        assert_eq!(out, json!([{"id":1,"score":0.9},{"id":3,"score":0.7}]));
    }

    #[test]
    fn t2_flatten() {
        assert_eq!(
            run(
                json!([[1, 2], [3], 4]),
                &[op(OpKind::Flatten)],
                &HashMap::new()
            ),
            json!([1, 2, 3, 4])
        );
    }

    #[test]
    fn t3_merge_and_inputs() {
        let steps: HashMap<&str, Value> = [
            ("a", json!({"a":1,"tags":["x"],"cfg":{"p":1}})),
            ("b", json!({"b":2,"tags":["y"],"cfg":{"q":2}})),
        ]
        .into();
        let expected = json!({"a":1,"b":2,"tags":["x","y"],"cfg":{"p":1,"q":2}});
        assert_eq!(run(Value::Null, &[merge(&["a", "b"])], &steps), expected);
        assert_eq!(
            merge_inputs(vec![steps["a"].clone(), steps["b"].clone()]),
            expected
        );
    }

    #[test]
    fn t4_pipeline_over_fanout_results() {
        let data = json!({"results":[{"url":"a","score":0.9},{"url":"b","score":0.5},{"ktsu_error":"agent timeout","item_index":2},{"url":"a","score":0.8},{"url":"c","score":0.95}]});
        let out = run(
            data,
            &[
                map("results"),
                filter("score > `0.6` && !ktsu_error"),
                dedup("url"),
                sort("score", SortOrder::Desc),
            ],
            &HashMap::new(),
        );
        assert_eq!(
            out,
            json!([{"url":"c","score":0.95},{"url":"a","score":0.9}])
        );
    }

    #[test]
    fn t5_map_on_a_non_array() {
        let data = json!({"results":[{"score":0.95,"label":"safe"},{"score":0.12,"label":"spam"}]});
        assert_eq!(
            run(data, &[map("results[0].score")], &HashMap::new()),
            json!(0.95)
        );
    }

    #[test]
    fn t6_map_projection() {
        let data = json!([{"title":"A","confidence":0.9,"x":1}]);
        assert_eq!(
            run(
                data,
                &[map("{ title: title, score: confidence }")],
                &HashMap::new()
            ),
            json!([{"title":"A","score":0.9}])
        );
    }

    #[test]
    fn t7_sort_nulls_last_in_both_orders() {
        let data = json!([{"n":2},{"n":null},{"n":1},{}]);
        assert_eq!(
            run(data.clone(), &[sort("n", SortOrder::Asc)], &HashMap::new()),
            json!([{"n":1},{"n":2},{"n":null},{}])
        );
        assert_eq!(
            run(data, &[sort("n", SortOrder::Desc)], &HashMap::new()),
            json!([{"n":2},{"n":1},{"n":null},{}])
        );
    }

    #[test]
    fn t8_deduplicate_keeps_null_keys() {
        let data = json!([{"u":"x","v":1},{"u":"x","v":2},{"v":3},{"v":4},{"u":1},{"u":"1"}]);
        assert_eq!(
            run(data, &[dedup("u")], &HashMap::new()),
            json!([{"u":"x","v":1},{"v":3},{"v":4},{"u":1}])
        );
    }

    #[test]
    fn t9_filter_wraps_a_single_value() {
        assert_eq!(
            run(
                json!({"status":"active"}),
                &[filter("status == 'active'")],
                &HashMap::new()
            ),
            json!([{"status":"active"}])
        );
        assert_eq!(run(Value::Null, &[filter("a")], &HashMap::new()), json!([]));
    }

    #[test]
    fn t10_hyphens_in_literals_survive() {
        let data = json!({"items":[{"status":"active"},{"status":"done"}]});
        let out = run(
            data,
            &[
                map("items"),
                op(OpKind::Flatten),
                filter("status == 'in-progress' || status == 'active'"),
            ],
            &HashMap::new(),
        );
        assert_eq!(out, json!([{"status":"active"}]));
    }

    #[test]
    fn errors_name_the_op() {
        let err = run_ops(
            json!({"a":1}),
            &[map("a"), sort("x", SortOrder::Asc)],
            &|_| Value::Null,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "transform op 2 (sort): expected an array, got number"
        );
        let err = run_ops(json!([1]), &[map("length(@)")], &|_| Value::Null).unwrap_err();
        assert!(err.0.starts_with("transform op 1 (map): "), "{}", err.0);
        assert_eq!(run(json!([]), &[dedup("u")], &HashMap::new()), json!([]));
    }

    #[test]
    fn mixed_key_types_compare_by_string_form() {
        let data = json!([{"k":"b"},{"k":10},{"k":"a"},{"k":2}]);
        // numbers vs numbers numerically; otherwise code-point order of the text form
        assert_eq!(
            run(data, &[sort("k", SortOrder::Asc)], &HashMap::new()),
            json!([{"k":2},{"k":10},{"k":"a"},{"k":"b"}])
        );
    }
}
