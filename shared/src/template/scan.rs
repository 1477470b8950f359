//! Splitting a template into literal text and `{{ … }}` placeholders (§3.1).

use std::ops::Range;

use super::error::TemplateError;
use super::lex::{is_quote, skip_quoted};

/// One piece of a template, as byte ranges of its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// Literal text, copied as is.
    Text(Range<usize>),
    /// A placeholder: `open` is the offset of its `{{`, `inner` the text between the braces.
    Placeholder { open: usize, inner: Range<usize> },
}

/// Splits `src` into pieces. A `{{` must be closed; a lone `}}` or `{` is literal text.
pub(super) fn scan(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let bytes = src.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    while let Some(found) = src[text_start..].find("{{") {
        let open = text_start + found;
        if open > text_start {
            pieces.push(Piece::Text(text_start..open));
        }
        let close = find_close(bytes, open)?;
        pieces.push(Piece::Placeholder {
            open,
            inner: open + 2..close,
        });
        text_start = close + 2;
    }
    if text_start < src.len() {
        pieces.push(Piece::Text(text_start..src.len()));
    }
    Ok(pieces)
}

/// Finds the `}}` that closes the placeholder opened at `open`, returning the offset of its
/// first brace. Literals are skipped and `{`/`}` pairs nest, so `{{ {a: x} }}` and
/// `{{ 'a}}b' }}` are single placeholders.
fn find_close(bytes: &[u8], open: usize) -> Result<usize, TemplateError> {
    let mut depth = 0usize;
    let mut i = open + 2;
    while let Some(&b) = bytes.get(i) {
        match b {
            q if is_quote(q) => match skip_quoted(bytes, i) {
                Some(end) => {
                    i = end;
                    continue;
                }
                None => {
                    return Err(TemplateError::new(
                        format!(
                            "unclosed `{{{{`: the {} starting at offset {i} never ends",
                            literal_name(q)
                        ),
                        open,
                    ))
                }
            },
            b'{' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err(TemplateError::new("unclosed `{{`: no matching `}}`", open))
}

fn literal_name(quote: u8) -> &'static str {
    match quote {
        b'\'' => "string `'…'`",
        b'"' => "quoted name `\"…\"`",
        _ => "JSON literal `` `…` ``",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(src: &str) -> Vec<String> {
        scan(src)
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Piece::Text(r) => format!("T:{}", &src[r]),
                Piece::Placeholder { inner, .. } => format!("P:{}", &src[inner]),
            })
            .collect()
    }

    #[test]
    fn splits_text_and_placeholders() {
        assert_eq!(shape("a{{ x }}b{{y}}"), ["T:a", "P: x ", "T:b", "P:y"]);
        assert_eq!(shape("plain"), ["T:plain"]);
        assert!(shape("").is_empty());
    }

    #[test]
    fn braces_nest_and_literals_are_skipped() {
        assert_eq!(shape("{{ {a: x} }}"), ["P: {a: x} "]);
        assert_eq!(shape("{{ {a: {b: x}} }}"), ["P: {a: {b: x}} "]);
        assert_eq!(shape("{{ 'a}}b' }}"), ["P: 'a}}b' "]);
        assert_eq!(shape("{{ \"a}}\" }}"), ["P: \"a}}\" "]);
        assert_eq!(shape("{{ `\"}}\"` }}"), ["P: `\"}}\"` "]);
        assert_eq!(shape(r"{{ 'it\'s}}' }}"), [r"P: 'it\'s}}' "]);
        assert_eq!(shape("{{ '{{' }}"), ["P: '{{' "]);
    }

    #[test]
    fn lone_braces_are_text() {
        assert_eq!(shape("a }} b { c"), ["T:a }} b { c"]);
        assert_eq!(shape("x}}{{ y }}"), ["T:x}}", "P: y "]);
    }

    #[test]
    fn unclosed_placeholders_fail_at_their_opening() {
        let e = scan("ab {{ x").unwrap_err();
        assert_eq!(e.offset, 3);
        let e = scan("{{ 'x }}").unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(e.message.contains("never ends"), "{}", e.message);
        assert_eq!(scan("{{ {a: x }}").unwrap_err().offset, 0);
    }
}
