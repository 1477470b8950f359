//! Lexical helpers shared by the template scanner and the hyphen pre-pass.
//!
//! Both must skip JMESPath's string-like tokens exactly as the JMESPath lexer does, or they
//! would disagree with the parser about where a literal ends.

/// Whether `b` opens one of the tokens whose content is opaque: raw strings `'…'`, quoted
/// identifiers `"…"` and JSON literals `` `…` ``.
pub(super) fn is_quote(b: u8) -> bool {
    matches!(b, b'\'' | b'"' | b'`')
}

/// The whitespace the JMESPath lexer skips.
pub(super) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Given that `bytes[start]` is a quote, returns the index just past its closing quote, or
/// `None` when the literal never ends. A backslash escapes the next byte, as in the lexer.
pub(super) fn skip_quoted(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = *bytes.get(start)?;
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        if b == quote {
            return Some(i + 1);
        }
        i += if b == b'\\' { 2 } else { 1 };
    }
    None
}

/// The offset of the first `pattern` outside literals. An unclosed literal runs to the end.
pub(super) fn find_unquoted(text: &str, pattern: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_quote(b) {
            i = skip_quoted(bytes, i)?;
        } else if bytes[i..].starts_with(pattern.as_bytes()) {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_literals_with_escapes() {
        assert_eq!(skip_quoted(b"'a}}b' x", 0), Some(6));
        assert_eq!(skip_quoted(br"'it\'s' x", 0), Some(7));
        assert_eq!(skip_quoted(br#""a\"b""#, 0), Some(6));
        assert_eq!(skip_quoted(br"`\``", 0), Some(4));
        assert_eq!(skip_quoted(b"'open", 0), None);
        assert_eq!(skip_quoted(br"'trailing\", 0), None);
    }

    #[test]
    fn finds_patterns_outside_literals() {
        assert_eq!(find_unquoted("a == {{ b }}", "{{"), Some(5));
        assert_eq!(find_unquoted("contains(a, '{{') && `\"{{\"`", "{{"), None);
        assert_eq!(find_unquoted("'{{' {{", "{{"), Some(5));
        assert_eq!(find_unquoted("'{{ open", "{{"), None);
    }
}
