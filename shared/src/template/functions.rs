//! The standard JMESPath function set, for checking calls when an expression is compiled.
//!
//! jmespath.rs only notices an unknown function or a wrong argument count when the call is
//! evaluated; the spec wants both reported by validation (`template_syntax`).

/// `(name, minimum argument count, variadic)` of every standard JMESPath function, matching
/// the signatures registered in jmespath.rs. A non-variadic function takes exactly `min`.
pub const FUNCTIONS: &[(&str, usize, bool)] = &[
    ("abs", 1, false),
    ("avg", 1, false),
    ("ceil", 1, false),
    ("contains", 2, false),
    ("ends_with", 2, false),
    ("floor", 1, false),
    ("join", 2, false),
    ("keys", 1, false),
    ("length", 1, false),
    ("map", 2, false),
    ("max", 1, false),
    ("max_by", 2, false),
    ("merge", 1, true),
    ("min", 1, false),
    ("min_by", 2, false),
    ("not_null", 1, true),
    ("reverse", 1, false),
    ("sort", 1, false),
    ("sort_by", 2, false),
    ("starts_with", 2, false),
    ("sum", 1, false),
    ("to_array", 1, false),
    ("to_number", 1, false),
    ("to_string", 1, false),
    ("type", 1, false),
    ("values", 1, false),
];

/// The 0-based position of the `&expression` argument of the functions that take one.
pub(super) fn expref_position(name: &str) -> Option<usize> {
    match name {
        "map" => Some(0),
        "max_by" | "min_by" | "sort_by" => Some(1),
        _ => None,
    }
}

/// Checks a call's name and argument count; the error is a readable message.
pub(super) fn check_call(name: &str, argc: usize) -> Result<(), String> {
    let Some(&(_, min, variadic)) = FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
        return Err(match suggest(name) {
            Some(s) => format!("unknown function `{name}` (did you mean `{s}`?)"),
            None => format!("unknown function `{name}`"),
        });
    };
    let ok = if variadic { argc >= min } else { argc == min };
    if ok {
        return Ok(());
    }
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    Err(if variadic {
        format!(
            "function `{name}` takes at least {min} {}, got {argc}",
            plural(min)
        )
    } else {
        format!("function `{name}` takes {min} {}, got {argc}", plural(min))
    })
}

/// The closest known function name, when it is close enough to be a likely typo.
fn suggest(name: &str) -> Option<&'static str> {
    FUNCTIONS
        .iter()
        .map(|(n, _, _)| (edit_distance(name, n), *n))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over chars (names are short, so the quadratic cost is irrelevant).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_jmespath_runtime() {
        assert_eq!(FUNCTIONS.len(), 26);
        for (name, _, _) in FUNCTIONS {
            assert!(
                jmespath::DEFAULT_RUNTIME.get_function(name).is_some(),
                "{name}"
            );
        }
    }

    /// Calls each runtime function with `min - 1`, `min` and `min + 1` null arguments and
    /// checks that only the arity errors the table predicts occur.
    #[test]
    fn arity_matches_the_jmespath_signatures() {
        use jmespath::{ErrorReason, Rcvar, RuntimeError, Variable};
        let runtime = &*jmespath::DEFAULT_RUNTIME;
        for &(name, min, variadic) in FUNCTIONS {
            let f = runtime.get_function(name).unwrap();
            let call = |argc: usize| {
                let args = vec![Rcvar::new(Variable::Null); argc];
                let mut ctx = jmespath::Context::new("", runtime);
                match f.evaluate(&args, &mut ctx) {
                    Ok(_) => None,
                    Err(e) => match e.reason {
                        ErrorReason::Runtime(r @ RuntimeError::NotEnoughArguments { .. })
                        | ErrorReason::Runtime(r @ RuntimeError::TooManyArguments { .. }) => {
                            Some(r)
                        }
                        _ => None,
                    },
                }
            };
            assert!(call(min).is_none(), "{name} with {min}");
            assert!(
                matches!(call(min - 1), Some(RuntimeError::NotEnoughArguments { .. })),
                "{name} with fewer"
            );
            assert_eq!(call(min + 1).is_none(), variadic, "{name} with more");
        }
    }

    #[test]
    fn arity_and_names() {
        assert!(check_call("length", 1).is_ok());
        assert!(check_call("merge", 3).is_ok());
        assert!(check_call("not_null", 1).is_ok());
        assert_eq!(
            check_call("length", 2).unwrap_err(),
            "function `length` takes 1 argument, got 2"
        );
        assert_eq!(
            check_call("merge", 0).unwrap_err(),
            "function `merge` takes at least 1 argument, got 0"
        );
        assert_eq!(
            check_call("lenght", 1).unwrap_err(),
            "unknown function `lenght` (did you mean `length`?)"
        );
        assert_eq!(
            check_call("upper", 1).unwrap_err(),
            "unknown function `upper`"
        );
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
