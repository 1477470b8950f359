//! Plain paths (`params.x`, `step.a.items[0].name`): the common case, evaluated directly on
//! the JSON data with exactly JMESPath's semantics, without converting anything.

use jmespath::ast::Ast;
use serde_json::Value;

/// One step of a plain path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    Field(String),
    Index(i32),
}

/// The null a missing path yields, borrowed so that lookups never allocate.
pub(super) static NULL: Value = Value::Null;

/// The steps of `ast` if it is a plain path: fields and indexes joined by `.`, `[…]` or `|`
/// (and `@`, which reads nothing). `None` for anything else.
pub(super) fn steps_of(ast: &Ast) -> Option<Vec<Step>> {
    fn push(ast: &Ast, out: &mut Vec<Step>) -> bool {
        match ast {
            Ast::Field { name, .. } => out.push(Step::Field(name.clone())),
            Ast::Index { idx, .. } => out.push(Step::Index(*idx)),
            Ast::Identity { .. } => {}
            Ast::Subexpr { lhs, rhs, .. } => return push(lhs, out) && push(rhs, out),
            _ => return false,
        }
        true
    }
    let mut steps = Vec::new();
    push(ast, &mut steps).then_some(steps)
}

/// Follows `steps` from `value`: a field of a non-object, an index of a non-array or a
/// missing entry gives null; a negative index counts from the end.
pub(super) fn walk<'v>(mut value: &'v Value, steps: &[Step]) -> &'v Value {
    for step in steps {
        let found = match step {
            Step::Field(name) => value.as_object().and_then(|m| m.get(name)),
            Step::Index(i) => value.as_array().and_then(|items| {
                let at = match usize::try_from(*i) {
                    Ok(i) => Some(i),
                    Err(_) => items.len().checked_sub(i.unsigned_abs() as usize),
                };
                at.and_then(|at| items.get(at))
            }),
        };
        match found {
            Some(v) => value = v,
            None => return &NULL,
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(e: &str) -> Option<Vec<Step>> {
        steps_of(&jmespath::parse(e).unwrap())
    }

    #[test]
    fn recognises_plain_paths() {
        use Step::*;
        assert_eq!(steps("a"), Some(vec![Field("a".into())]));
        assert_eq!(
            steps("a.\"b-c\"[0][-1] | d"),
            Some(vec![
                Field("a".into()),
                Field("b-c".into()),
                Index(0),
                Index(-1),
                Field("d".into())
            ])
        );
        assert_eq!(steps("@"), Some(vec![]));
        for e in [
            "a[*]", "a.*", "a[]", "a[0:1]", "`1`", "f(a)", "a || b", "a.[b]",
        ] {
            assert_eq!(steps(e), None, "{e}");
        }
    }

    #[test]
    fn walks_like_jmespath() {
        let v = json!({"a": [10, 20, 30], "o": {"k": null}});
        let s = |e: &str| walk(&v, &steps(e).unwrap()).clone();
        assert_eq!(s("a[0]"), json!(10));
        assert_eq!(s("a[-1]"), json!(30));
        assert_eq!(s("a[-3]"), json!(10));
        assert_eq!(s("a[-4]"), json!(null));
        assert_eq!(s("a[3]"), json!(null));
        assert_eq!(s("a.x"), json!(null));
        assert_eq!(s("o[0]"), json!(null));
        assert_eq!(s("o.k.z"), json!(null));
        assert_eq!(s("@"), v);
    }
}
