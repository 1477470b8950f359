//! The hyphenated-identifier pre-pass (§3.2).
//!
//! Step ids such as `search-hn` are not JMESPath identifiers, so `step.search-hn.repos` is
//! rewritten to `step."search-hn".repos` before parsing. Literals are never touched, so
//! `status == 'in-progress'` keeps its string intact.

use super::lex::{is_quote, is_space, skip_quoted};

/// An expression after the pre-pass, with enough bookkeeping to map offsets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Rewritten {
    pub text: String,
    /// Offsets in `text` of every inserted `"`, in increasing order.
    inserted: Vec<usize>,
}

impl Rewritten {
    /// Maps an offset in the rewritten text to the offset of the same character in the
    /// original (an inserted quote maps to the character it precedes).
    pub fn original_offset(&self, at: usize) -> usize {
        at - self.inserted.partition_point(|&q| q < at)
    }
}

/// Applies the pre-pass to one expression.
pub(super) fn rewrite(expr: &str) -> Rewritten {
    let bytes = expr.as_bytes();
    let mut text = String::with_capacity(expr.len() + 4);
    let mut inserted = Vec::new();
    let mut copied = 0;
    let mut after_dot = false;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_quote(b) {
            i = skip_quoted(bytes, i).unwrap_or(bytes.len());
            after_dot = false;
        } else if is_word_byte(b) {
            let start = i;
            while bytes.get(i).copied().is_some_and(is_word_byte) {
                i += 1;
            }
            let word = &expr[start..i];
            if (after_dot && !is_plain_identifier(word)) || is_hyphenated(word) {
                text.push_str(&expr[copied..start]);
                inserted.push(text.len());
                text.push('"');
                text.push_str(word);
                inserted.push(text.len());
                text.push('"');
                copied = i;
            }
            after_dot = false;
        } else {
            if !is_space(b) {
                after_dot = b == b'.';
            }
            i += 1;
        }
    }
    text.push_str(&expr[copied..]);
    Rewritten { text, inserted }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`
fn is_plain_identifier(word: &str) -> bool {
    let mut bytes = word.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `^[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)+$`
fn is_hyphenated(word: &str) -> bool {
    let mut segments = word.split('-');
    let first_ok = segments.next().is_some_and(is_plain_identifier);
    let mut rest = 0;
    let rest_ok = segments.all(|s| {
        rest += 1;
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    first_ok && rest_ok && rest > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table() {
        let cases = [
            ("step.search-hn.repos", r#"step."search-hn".repos"#),
            ("step.my_step-2.out", r#"step."my_step-2".out"#),
            ("step.1st.x", r#"step."1st".x"#),
            (
                "step.a.status == 'in-progress'",
                "step.a.status == 'in-progress'",
            ),
            ("x[-1]", "x[-1]"),
            (r#"`"a-b"`"#, r#"`"a-b"`"#),
            (r#""a-b".c"#, r#""a-b".c"#),
        ];
        for (input, expected) in cases {
            assert_eq!(rewrite(input).text, expected, "input: {input}");
        }
    }

    #[test]
    fn more_shapes() {
        let cases = [
            ("search-hn.x", r#""search-hn".x"#),
            ("step. search-hn", r#"step. "search-hn""#),
            ("step .\n 1st", "step .\n \"1st\""),
            ("a[0:-1]", "a[0:-1]"),
            ("a.b", "a.b"),
            ("a-", "a-"),
            ("a--b", "a--b"),
            ("1-2", "1-2"),
            ("{my-key: step.a-b}", r#"{"my-key": step."a-b"}"#),
            (r"'it\'s a-b' || step.x-y", r#"'it\'s a-b' || step."x-y""#),
            ("`{\"a\": 1}`.b-c", "`{\"a\": 1}`.\"b-c\""),
            ("é.a-b", "é.\"a-b\""),
            ("'unclosed a-b", "'unclosed a-b"),
        ];
        for (input, expected) in cases {
            assert_eq!(rewrite(input).text, expected, "input: {input}");
        }
    }

    #[test]
    fn offsets_map_back() {
        let r = rewrite("step.search-hn.repos");
        let s = "step.\"search-hn\".repos";
        assert_eq!(r.text, s);
        assert_eq!(r.original_offset(0), 0);
        assert_eq!(r.original_offset(5), 5); // inserted quote -> the `s` it precedes
        assert_eq!(r.original_offset(6), 5);
        assert_eq!(r.original_offset(16), 14); // the second `.`
        assert_eq!(r.original_offset(s.len()), "step.search-hn.repos".len());
    }
}
