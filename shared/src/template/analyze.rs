//! Static analysis of a parsed expression: which context paths it reads (§3.3, §3.8, §5.2).

use jmespath::ast::Ast;

/// A path rooted at the evaluation context, found by static analysis.
///
/// `step.fetch.urls` gives `{ name: "step", next: Field("fetch") }`. The validator uses it to
/// check namespaces, step ids, params, env names and secret flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRef {
    /// The root field (`step`, `params`, …), unquoted; `"@"` for any other use of the context
    /// root itself (`@`, `[0]`, `*`, `[]`, `[?…]` applied to it).
    pub name: String,
    /// What is read from it next.
    pub next: Next,
    /// Byte offset of the root field in the string given to `parse`.
    pub offset: usize,
}

/// What follows the root of a [`RootRef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing: the whole value is used (`step`, `keys(params)`, `item_index`).
    None,
    /// A field (`.name` or `."quoted name"`, or a pipe into a field).
    Field(String),
    /// Anything else: an index, slice, wildcard, filter, flatten or multi-select.
    Other,
}

/// Every direct child of a node, for walks over the whole tree.
pub(super) fn children(ast: &Ast) -> Vec<&Ast> {
    match ast {
        Ast::Comparison { lhs, rhs, .. }
        | Ast::And { lhs, rhs, .. }
        | Ast::Or { lhs, rhs, .. }
        | Ast::Projection { lhs, rhs, .. }
        | Ast::Subexpr { lhs, rhs, .. } => vec![lhs, rhs],
        Ast::Condition {
            predicate, then, ..
        } => vec![predicate, then],
        Ast::Expref { ast, .. } => vec![ast],
        Ast::Flatten { node, .. } | Ast::Not { node, .. } | Ast::ObjectValues { node, .. } => {
            vec![node]
        }
        Ast::Function { args, .. } => args.iter().collect(),
        Ast::MultiList { elements, .. } => elements.iter().collect(),
        Ast::MultiHash { elements, .. } => elements.iter().map(|kv| &kv.value).collect(),
        Ast::Identity { .. }
        | Ast::Field { .. }
        | Ast::Index { .. }
        | Ast::Literal { .. }
        | Ast::Slice { .. } => Vec::new(),
    }
}

/// The paths an expression reads from the context, in source order. Offsets are those of
/// the parsed text. Paths evaluated against something other than the context (a projection's
/// right side, a filter, an `&expression`, the right side of `.` or `|`) are not included.
pub(super) fn root_refs(ast: &Ast) -> Vec<RootRef> {
    let mut out = Vec::new();
    collect(ast, Next::None, &mut out);
    out
}

/// Collects the roots of `node`, which is evaluated against the context; `next` is what is
/// applied to `node`'s result, should `node` turn out to be a bare root.
fn collect(node: &Ast, next: Next, out: &mut Vec<RootRef>) {
    let mut push = |name: &str, next: Next, offset: usize| {
        out.push(RootRef {
            name: name.to_string(),
            next,
            offset,
        })
    };
    match node {
        Ast::Field { name, offset } => push(name, next, *offset),
        Ast::Identity { offset } => push("@", next, *offset),
        Ast::Index { offset, .. } | Ast::Slice { offset, .. } => push("@", Next::Other, *offset),
        Ast::Subexpr { lhs, rhs, .. } => collect(lhs, follower(rhs).unwrap_or(next), out),
        Ast::Projection { lhs, .. } => collect(lhs, Next::Other, out),
        Ast::ObjectValues { node, .. } | Ast::Flatten { node, .. } => {
            collect(node, Next::Other, out)
        }
        Ast::Function { .. }
        | Ast::MultiList { .. }
        | Ast::MultiHash { .. }
        | Ast::Comparison { .. }
        | Ast::And { .. }
        | Ast::Or { .. }
        | Ast::Not { .. }
        | Ast::Condition { .. } => {
            for child in children(node) {
                collect(child, Next::None, out);
            }
        }
        // An `&expression` is evaluated later, against whatever the function passes it.
        Ast::Literal { .. } | Ast::Expref { .. } => {}
    }
}

/// What the right side of `lhs.rhs` / `lhs | rhs` reads first from `lhs`'s result;
/// `None` when it reads nothing at all (a bare `@`), so the whole value is used.
fn follower(rhs: &Ast) -> Option<Next> {
    match rhs {
        Ast::Field { name, .. } => Some(Next::Field(name.clone())),
        Ast::Identity { .. } => None,
        Ast::Subexpr { lhs, rhs, .. } => follower(lhs).or_else(|| follower(rhs)),
        Ast::Projection { lhs, .. } => match follower(lhs) {
            Some(Next::Field(name)) => Some(Next::Field(name)),
            _ => Some(Next::Other),
        },
        _ => Some(Next::Other),
    }
}

/// `Some((a, b))` iff the expression is exactly `a.b`: two fields joined by a dot (not a pipe).
pub(super) fn single_path<'a>(ast: &'a Ast, text: &str) -> Option<(&'a str, &'a str)> {
    match ast {
        Ast::Subexpr { offset, lhs, rhs } if text.as_bytes().get(*offset) == Some(&b'.') => {
            match (lhs.as_ref(), rhs.as_ref()) {
                (Ast::Field { name: a, .. }, Ast::Field { name: b, .. }) => Some((a, b)),
                _ => None,
            }
        }
        _ => None,
    }
}
