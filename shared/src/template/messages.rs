//! Readable error messages from jmespath.rs errors, which name tokens by their Rust names
//! and report argument positions from 0.

use jmespath::ast::Ast;
use jmespath::{ErrorReason, JmespathError, RuntimeError};

use super::analyze::children;

/// The message for a run-time error of the expression whose tree is `ast`.
pub(super) fn runtime_message(ast: &Ast, e: &JmespathError) -> String {
    let function = function_at(ast, e.offset)
        .map_or_else(|| "a function".to_string(), |name| format!("`{name}`"));
    match &e.reason {
        ErrorReason::Runtime(RuntimeError::InvalidType {
            expected,
            actual,
            position,
        }) => format!(
            "argument {} of {function} must be {}, got {actual}",
            position + 1,
            type_list(expected)
        ),
        ErrorReason::Runtime(RuntimeError::InvalidReturnType {
            expected, actual, ..
        }) => format!(
            "the `&expression` given to {function} must give {} for every element, got {actual}",
            type_list(&expected.replace("expression->", ""))
        ),
        ErrorReason::Runtime(other) => other.to_string(),
        ErrorReason::Parse(message) => message.clone(),
    }
}

/// The name of the function called at `offset` (jmespath.rs reports run-time errors at the
/// call's `(`).
fn function_at(ast: &Ast, offset: usize) -> Option<&str> {
    match ast {
        Ast::Function {
            name, offset: at, ..
        } if *at == offset => Some(name),
        _ => children(ast)
            .into_iter()
            .find_map(|c| function_at(c, offset)),
    }
}

/// `array|object|string` → `array, object or string`.
fn type_list(types: &str) -> String {
    let parts: Vec<&str> = types.split('|').collect();
    match parts.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => types.to_string(),
    }
}

/// A readable form of a jmespath.rs parse error (which names tokens by their Rust names).
pub(super) fn parse_message(reason: &ErrorReason) -> String {
    let message = match reason {
        ErrorReason::Parse(m) => m.as_str(),
        ErrorReason::Runtime(r) => return r.to_string(),
    };
    let (head, found) = match message.split_once(" -- found ") {
        Some((head, found)) => (head, Some(found)),
        None => (message, None),
    };
    let head = match head {
        "Unexpected nud token" => "unexpected token".to_string(),
        "Did not parse the complete expression" => {
            "unexpected token after a complete expression".to_string()
        }
        other => lowercase_first(other),
    };
    match found {
        Some(token) => format!("{head}: found {}", describe_token(token)),
        None => head,
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Describes a token from its `Debug` form, e.g. `Rbracket` → `` `]` ``.
fn describe_token(debug: &str) -> String {
    let symbol = match debug {
        "Eof" => return "the end of the expression".to_string(),
        "Dot" => ".",
        "Star" => "*",
        "Flatten" => "[]",
        "And" => "&&",
        "Or" => "||",
        "Pipe" => "|",
        "Filter" => "[?",
        "Lbracket" => "[",
        "Rbracket" => "]",
        "Comma" => ",",
        "Colon" => ":",
        "Not" => "!",
        "Ne" => "!=",
        "Eq" => "==",
        "Gt" => ">",
        "Gte" => ">=",
        "Lt" => "<",
        "Lte" => "<=",
        "At" => "@",
        "Ampersand" => "&",
        "Lparen" => "(",
        "Rparen" => ")",
        "Lbrace" => "{",
        "Rbrace" => "}",
        other => {
            let inner = |prefix: &str| {
                other
                    .strip_prefix(prefix)
                    .and_then(|s| s.strip_suffix(')'))
                    .map(str::to_string)
            };
            if let Some(name) = inner("Identifier(") {
                return format!("`{}`", name.trim_matches('"'));
            }
            if let Some(name) = inner("QuotedIdentifier(") {
                return format!("`{name}`");
            }
            if let Some(n) = inner("Number(") {
                return format!("`{n}`");
            }
            if other.starts_with("Literal(") {
                return "a literal".to_string();
            }
            other
        }
    };
    format!("`{symbol}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(expr: &str) -> String {
        parse_message(&jmespath::parse(expr).unwrap_err().reason)
    }

    #[test]
    fn parse_messages_name_tokens_by_their_text() {
        assert_eq!(
            parse_error("a ]"),
            "unexpected token after a complete expression: found `]`"
        );
        assert_eq!(
            parse_error("a.("),
            "expected identifier, '*', '{', '[', '&', or '[?': found `(`"
        );
        assert_eq!(
            parse_error("(a"),
            "expected ')' to close '(': found the end of the expression"
        );
        assert_eq!(
            parse_error("a b"),
            "unexpected token after a complete expression: found `b`"
        );
        assert_eq!(
            parse_error("a[x]"),
            "expected number, ':', or '*': found `x`"
        );
        assert_eq!(
            parse_error("a | `1` `2`"),
            "unexpected token after a complete expression: found a literal"
        );
        assert_eq!(
            parse_error("`x`").split(':').next(),
            Some("unable to parse literal JSON x")
        );
    }

    #[test]
    fn type_lists_read_as_prose() {
        assert_eq!(type_list("array|object|string"), "array, object or string");
        assert_eq!(type_list("number|string"), "number or string");
        assert_eq!(type_list("number"), "number");
    }
}
