//! Compile-time checks that jmespath.rs would only make at run time, or not at all.

use jmespath::ast::Ast;

use super::analyze::children;
use super::functions::{check_call, expref_position};
use super::lex::{is_quote, is_space, skip_quoted};

/// The largest slice step accepted. jmespath.rs adds the step to an `i32` index, so a step
/// near `i32::MAX` would overflow; no real expression needs a step anywhere near this.
const MAX_SLICE_STEP: i32 = 1 << 20;

/// Limits that keep absurd expressions from exhausting the stack: jmespath.rs parses,
/// evaluates and drops expressions recursively. Each is far above any real expression and
/// far below what a 2 MiB thread can take even in a debug build.
///
/// Operators that make the parser recurse: `(`, `[`, `{`, `!`, `&`, `*`.
const MAX_NESTING_OPERATORS: usize = 128;
/// All operators, including the `.` and `|` chains the parser handles in a loop.
const MAX_OPERATORS: usize = 1024;
/// Depth of the parsed tree, which bounds every recursive walk over it.
const MAX_DEPTH: usize = 100;

/// A check failure: message and offset in the parsed text.
pub(super) type Failure = (String, usize);

/// Rejects expressions with too many operators, before they reach the parser.
pub(super) fn check_size(text: &str) -> Result<(), Failure> {
    let bytes = text.as_bytes();
    let (mut nesting, mut all) = (0, 0);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_quote(b) {
            // An unclosed literal is left for the parser to report.
            i = skip_quoted(bytes, i).unwrap_or(bytes.len());
            continue;
        }
        let (nests, width) = match (b, bytes.get(i + 1)) {
            // `&&`, `||` and `!=` are binary operators, which the parser handles in a loop.
            (b'&', Some(b'&')) | (b'|', Some(b'|')) | (b'!', Some(b'=')) => (false, 2),
            (b'(' | b'[' | b'{' | b'!' | b'&' | b'*', _) => (true, 1),
            (b'.' | b'|', _) => (false, 1),
            _ => {
                i += 1;
                continue;
            }
        };
        nesting += usize::from(nests);
        all += 1;
        if nesting > MAX_NESTING_OPERATORS || all > MAX_OPERATORS {
            return Err(("expression too complex: too many operators".to_string(), i));
        }
        i += width;
    }
    Ok(())
}

/// Rejects parsed trees deeper than [`MAX_DEPTH`] (measured without recursion).
pub(super) fn check_depth(ast: &Ast) -> Result<(), Failure> {
    let mut stack = vec![(ast, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err((
                format!("expression too complex: nested more than {MAX_DEPTH} levels deep"),
                offset_of(node),
            ));
        }
        stack.extend(children(node).into_iter().map(|c| (c, depth + 1)));
    }
    Ok(())
}

fn offset_of(ast: &Ast) -> usize {
    match ast {
        Ast::Comparison { offset, .. }
        | Ast::Condition { offset, .. }
        | Ast::Identity { offset }
        | Ast::Expref { offset, .. }
        | Ast::Flatten { offset, .. }
        | Ast::Function { offset, .. }
        | Ast::Field { offset, .. }
        | Ast::Index { offset, .. }
        | Ast::Literal { offset, .. }
        | Ast::MultiList { offset, .. }
        | Ast::MultiHash { offset, .. }
        | Ast::Not { offset, .. }
        | Ast::Projection { offset, .. }
        | Ast::ObjectValues { offset, .. }
        | Ast::And { offset, .. }
        | Ast::Or { offset, .. }
        | Ast::Slice { offset, .. }
        | Ast::Subexpr { offset, .. } => *offset,
    }
}

/// Checks the tree's depth, then every function call (name, argument count, `&expression`
/// arguments) and every slice, anywhere in the tree, including inside projections, filters
/// and `&expressions`.
pub(super) fn check(ast: &Ast, text: &str) -> Result<(), Failure> {
    check_depth(ast)?;
    check_node(ast, text)
}

fn check_node(ast: &Ast, text: &str) -> Result<(), Failure> {
    match ast {
        Ast::Function { name, args, offset } => {
            let at = name_offset(text, *offset);
            check_call(name, args.len()).map_err(|m| (m, at))?;
            let wanted = expref_position(name);
            for (i, arg) in args.iter().enumerate() {
                match (arg, wanted == Some(i)) {
                    (Ast::Expref { ast, .. }, true) => check_node(ast, text)?,
                    (Ast::Expref { offset, .. }, false) => {
                        return Err((
                            format!(
                                "`{name}` does not take an `&expression` as argument {}",
                                i + 1
                            ),
                            *offset,
                        ))
                    }
                    (_, true) => {
                        return Err((
                            format!("argument {} of `{name}` must be an `&expression`", i + 1),
                            at,
                        ))
                    }
                    (_, false) => check_node(arg, text)?,
                }
            }
            Ok(())
        }
        Ast::Expref { offset, .. } => Err((
            "`&expression` is only allowed as an argument of map, sort_by, min_by or max_by"
                .to_string(),
            *offset,
        )),
        Ast::Slice { step, offset, .. } if *step == 0 => {
            Err(("a slice step cannot be 0".to_string(), *offset))
        }
        Ast::Slice { step, offset, .. } if step.unsigned_abs() > MAX_SLICE_STEP.unsigned_abs() => {
            Err((
                format!("a slice step cannot exceed {MAX_SLICE_STEP}"),
                *offset,
            ))
        }
        _ => children(ast)
            .into_iter()
            .try_for_each(|c| check_node(c, text)),
    }
}

/// jmespath.rs records a call at its `(`; step back over whitespace and the name so errors
/// point at the function name.
fn name_offset(text: &str, paren: usize) -> usize {
    let bytes = text.as_bytes();
    let mut i = paren.min(bytes.len());
    while i > 0 && is_space(bytes[i - 1]) {
        i -= 1;
    }
    while i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_') {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str) -> Result<(), Failure> {
        check(&jmespath::parse(expr).unwrap(), expr)
    }

    #[test]
    fn accepts_standard_calls() {
        for e in [
            "length(a)",
            "sort_by(a, &b)",
            "max_by(a, &b.c)",
            "map(&to_string(@), a)",
            "merge(a, b, c)",
            "not_null(a, b)",
            "a[*].length(b)",
            "a[?contains(b, 'x')]",
            "a[::-1]",
        ] {
            assert_eq!(run(e), Ok(()), "{e}");
        }
    }

    #[test]
    fn bounds_complexity() {
        let nested = format!("{}a{}", "(".repeat(129), ")".repeat(129));
        assert!(check_size(&nested).unwrap_err().0.contains("too complex"));
        assert_eq!(
            check_size(&format!("{}a{}", "(".repeat(128), ")".repeat(128))),
            Ok(())
        );
        assert!(check_size(&"a.b".repeat(1025)).is_err());
        // Binary operators do not nest.
        assert_eq!(check_size(&"a && b || c != d".repeat(60)), Ok(()));
        // Operators inside literals do not count.
        assert_eq!(check_size(&format!("'{}'", "(".repeat(500))), Ok(()));
        let chain = format!("a{}", ".b".repeat(100));
        assert!(run(&chain).unwrap_err().0.contains("nested more than"));
        assert_eq!(run(&format!("a{}", ".b".repeat(98))), Ok(()));
    }

    #[test]
    fn rejects_bad_calls_anywhere() {
        let cases = [
            ("foo(a)", "unknown function `foo`", 0),
            (
                "x | length(a, b)",
                "function `length` takes 1 argument, got 2",
                4,
            ),
            ("a[*].upper(b)", "unknown function `upper`", 5),
            ("a[?lenght(b) > `1`]", "unknown function `lenght`", 3),
            ("sort_by(a, &nope(b))", "unknown function `nope`", 12),
            (
                "map(&b, a, c)",
                "function `map` takes 2 arguments, got 3",
                0,
            ),
            (
                "sort_by(a, b)",
                "argument 2 of `sort_by` must be an `&expression`",
                0,
            ),
            (
                "length(&a)",
                "`length` does not take an `&expression` as argument 1",
                7,
            ),
            ("&a", "`&expression` is only allowed", 0),
            ("[&a]", "`&expression` is only allowed", 1),
            ("a[::0]", "a slice step cannot be 0", 0),
            ("a[::2000000000]", "a slice step cannot exceed", 0),
            ("length  (a, b)", "takes 1 argument", 0),
        ];
        for (e, msg, at) in cases {
            let (m, off) = run(e).unwrap_err();
            assert!(m.contains(msg), "{e}: {m}");
            if !msg.starts_with("a slice") {
                assert_eq!(off, at, "{e}");
            }
        }
    }
}
