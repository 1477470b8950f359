//! Behaviour of the engine as a whole: the spec's worked examples (§3.2, §3.9), reference
//! analysis, errors, and properties.

use serde_json::{json, Value};

use super::*;

/// The context of §3.9.
fn spec_context() -> Context {
    Context::new(&json!({
        "params": {"name": "Ada", "n": 42, "tags": ["x", "y"]},
        "step": {"search-hn": {"repos": [{"name": "r1", "stars": 5}], "status": "in-progress"}},
        "env": {"REGION": "eu"}
    }))
}

fn typed(src: &str) -> Value {
    Template::parse(src).unwrap().eval(&spec_context()).unwrap()
}

fn rendered(src: &str) -> String {
    Template::parse(src)
        .unwrap()
        .render(&spec_context())
        .unwrap()
}

fn condition(src: &str) -> Result<bool, EvalError> {
    Expr::parse_bare(src).unwrap().is_true(&spec_context())
}

// ---- §3.9 worked examples ----

#[test]
fn worked_examples_typed_fields() {
    let cases = [
        ("{{ params.n }}", json!(42)),
        ("  {{ params.n }}\n", json!(42)),
        ("n={{ params.n }}", json!("n=42")),
        ("{{ params.tags }}", json!(["x", "y"])),
        ("tags: {{ params.tags }}", json!("tags: [\"x\",\"y\"]")),
        (
            "{{ {a: params.n, b: params.name} }}",
            json!({"a": 42, "b": "Ada"}),
        ),
        ("{{ params.name }} ({{ env.REGION }})", json!("Ada (eu)")),
        ("{{ params.name }}{{ params.n }}", json!("Ada42")),
        ("a{{ params.nope }}b", json!("ab")),
        ("{{ step.search-hn.repos[0].name }}", json!("r1")),
        ("{{ step.search-hn.status == 'in-progress' }}", json!(true)),
        ("{{ length(step.search-hn.repos) }}", json!(1)),
        ("{{ `5` }}", json!(5)),
        ("{{ '{{' }}", json!("{{")),
    ];
    for (src, expected) in cases {
        assert_eq!(typed(src), expected, "{src:?}");
    }
}

#[test]
fn worked_example_null_entry_is_omitted_from_params() {
    let params =
        TValue::compile(&json!({"key": "{{ params.nope }}", "n": "{{ params.n }}"})).unwrap();
    let ctx = spec_context();
    assert_eq!(
        params.eval(&ctx, NullPolicy::OmitNullEntries).unwrap(),
        json!({"n": 42})
    );
    assert_eq!(
        params.eval(&ctx, NullPolicy::Keep).unwrap(),
        json!({"key": null, "n": 42})
    );
}

#[test]
fn worked_example_string_field() {
    assert_eq!(
        rendered("https://x/{{ params.tags }}"),
        "https://x/[\"x\",\"y\"]"
    );
}

#[test]
fn worked_example_conditions() {
    assert_eq!(condition("params.n > `40`"), Ok(true));
    assert_eq!(condition("`0`"), Ok(true));
    assert_eq!(condition("params.tags"), Ok(true));
    assert_eq!(condition("''"), Ok(false));
    assert_eq!(condition("step.search-hn.nope"), Ok(false));
    let err = condition("length(params.n)").unwrap_err();
    assert_eq!(
        err.message,
        "cannot evaluate `length(params.n)`: argument 1 of `length` must be array, object or string, got number"
    );
}

#[test]
fn worked_example_references_for_the_validator() {
    let t = Template::parse("{{ fetch.urls }}").unwrap();
    assert_eq!(
        t.whole().unwrap().refs(),
        [RootRef {
            name: "fetch".into(),
            next: Next::Field("urls".into()),
            offset: 3
        }]
    );
    let t = Template::parse("{{ step }}").unwrap();
    assert_eq!(
        refs(t.whole().unwrap().source()),
        [("step".into(), Next::None)]
    );
}

// ---- §3.2 pre-pass, seen through evaluation ----

#[test]
fn hyphenated_ids_evaluate() {
    let ctx = Context::new(&json!({
        "step": {
            "search-hn": {"repos": 3},
            "my_step-2": {"out": "o"},
            "1st": {"x": "first"},
            "a": {"status": "in-progress"}
        },
        "x": [1, 2, 3],
        "a-b": {"c": "quoted"}
    }));
    let cases = [
        ("step.search-hn.repos", json!(3)),
        ("step.my_step-2.out", json!("o")),
        ("step.1st.x", json!("first")),
        ("step.a.status == 'in-progress'", json!(true)),
        ("x[-1]", json!(3)),
        ("`\"a-b\"`", json!("a-b")),
        ("\"a-b\".c", json!("quoted")),
        ("a-b.c", json!("quoted")),
    ];
    for (src, expected) in cases {
        assert_eq!(
            Expr::parse(src).unwrap().eval(&ctx).unwrap(),
            expected,
            "{src}"
        );
    }
}

// ---- root references ----

fn refs(src: &str) -> Vec<(String, Next)> {
    Expr::parse(src)
        .unwrap()
        .refs()
        .iter()
        .map(|r| (r.name.clone(), r.next.clone()))
        .collect()
}

fn field(name: &str) -> Next {
    Next::Field(name.into())
}

#[test]
fn root_references_of_many_shapes() {
    let r = |name: &str, next: Next| (name.to_string(), next);
    let cases: Vec<(&str, Vec<(String, Next)>)> = vec![
        ("step.fetch.urls", vec![r("step", field("fetch"))]),
        ("step", vec![r("step", Next::None)]),
        ("keys(step)", vec![r("step", Next::None)]),
        ("step[0]", vec![r("step", Next::Other)]),
        ("step.*", vec![r("step", Next::Other)]),
        ("step[*]", vec![r("step", Next::Other)]),
        ("step[]", vec![r("step", Next::Other)]),
        ("step[?a]", vec![r("step", Next::Other)]),
        ("step[1:]", vec![r("step", Next::Other)]),
        ("step.[a]", vec![r("step", Next::Other)]),
        ("step.{a: b}", vec![r("step", Next::Other)]),
        ("params.tags[0]", vec![r("params", field("tags"))]),
        ("env.REGION", vec![r("env", field("REGION"))]),
        ("item_index", vec![r("item_index", Next::None)]),
        ("item.url", vec![r("item", field("url"))]),
        ("@", vec![r("@", Next::None)]),
        ("@.step", vec![r("@", field("step"))]),
        ("[0]", vec![r("@", Next::Other)]),
        ("*", vec![r("@", Next::Other)]),
        ("[]", vec![r("@", Next::Other)]),
        ("[*].a", vec![r("@", Next::Other)]),
        ("[?a].b", vec![r("@", Next::Other)]),
        ("[1:2]", vec![r("@", Next::Other)]),
        ("step.\"search-hn\".x", vec![r("step", field("search-hn"))]),
        ("step.search-hn.x", vec![r("step", field("search-hn"))]),
        ("\"step\".x", vec![r("step", field("x"))]),
        (
            "step.a.status == 'in-progress'",
            vec![r("step", field("a"))],
        ),
        // Projection right sides, filters and &expressions are relative.
        ("step.a[*].b.c", vec![r("step", field("a"))]),
        ("step.a.*.b", vec![r("step", field("a"))]),
        ("step.a[?b.c == params.x]", vec![r("step", field("a"))]),
        ("step.a[].params", vec![r("step", field("a"))]),
        (
            "sort_by(step.a.items, &params.x)",
            vec![r("step", field("a"))],
        ),
        ("map(&x.y, params.list)", vec![r("params", field("list"))]),
        // Function arguments, multi-selects and operators read the context.
        (
            "[params.a, env.B]",
            vec![r("params", field("a")), r("env", field("B"))],
        ),
        (
            "{x: params.a, y: step.b.c}",
            vec![r("params", field("a")), r("step", field("b"))],
        ),
        (
            "params.a && !(env.B) || item",
            vec![
                r("params", field("a")),
                r("env", field("B")),
                r("item", Next::None),
            ],
        ),
        // Standard JMESPath binds `!` tighter than `.`: this is `(!env).B`, reading all of env.
        ("!env.B", vec![r("env", Next::None)]),
        (
            "not_null(params.a, params.b)",
            vec![r("params", field("a")), r("params", field("b"))],
        ),
        ("length(step.a) > `1`", vec![r("step", field("a"))]),
        ("{a: params.x}.a", vec![r("params", field("x"))]),
        ("length(step).x", vec![r("step", Next::None)]),
        // A pipe's left side reads the context; its right side reads the left's result.
        ("params.a | step.b", vec![r("params", field("a"))]),
        ("step | fetch", vec![r("step", field("fetch"))]),
        ("step | fetch.urls", vec![r("step", field("fetch"))]),
        ("step | fetch[*].x", vec![r("step", field("fetch"))]),
        ("step | keys(@)", vec![r("step", Next::Other)]),
        ("step | [0]", vec![r("step", Next::Other)]),
        ("step | @", vec![r("step", Next::None)]),
        ("(step | @).fetch", vec![r("step", field("fetch"))]),
        ("step | @ | fetch", vec![r("step", field("fetch"))]),
        // Literals read nothing.
        ("'lit'", vec![]),
        ("`{\"a\": 1}`.a", vec![]),
    ];
    for (src, expected) in cases {
        assert_eq!(refs(src), expected, "{src}");
    }
}

#[test]
fn reference_offsets_point_into_the_template() {
    let t = Template::parse("ab {{ x || step.y-z }} {{ a-b.c || step.d }}").unwrap();
    let offsets: Vec<(String, usize)> = t
        .exprs()
        .flat_map(|e| e.refs().iter().map(|r| (r.name.clone(), r.offset)))
        .collect();
    assert_eq!(
        offsets,
        [
            ("x".to_string(), 6),
            ("step".to_string(), 11),
            ("a-b".to_string(), 26),
            ("step".to_string(), 35)
        ]
    );
    let e = Expr::parse("  params.x").unwrap();
    assert_eq!(e.refs()[0].offset, 2);
    assert_eq!(e.source(), "params.x");
}

#[test]
fn single_paths() {
    let cases = [
        ("env.X", Some(("env", "X"))),
        ("env . X", Some(("env", "X"))),
        ("\"env\".\"X\"", Some(("env", "X"))),
        ("env.MY-KEY", Some(("env", "MY-KEY"))),
        ("params.api_key", Some(("params", "api_key"))),
        ("env | X", None),
        ("env.X.y", None),
        ("env", None),
        ("env.X[0]", None),
        ("env.*", None),
        ("length(env.X)", None),
        ("params.x || env.Y", None),
        ("`1`", None),
    ];
    for (src, expected) in cases {
        assert_eq!(Expr::parse(src).unwrap().single_path(), expected, "{src}");
    }
    let whole = Template::parse(" {{ env.X }} ").unwrap();
    assert_eq!(
        whole.whole().and_then(Expr::single_path),
        Some(("env", "X"))
    );
}

// ---- compile errors ----

fn template_error(src: &str) -> TemplateError {
    Template::parse(src).unwrap_err()
}

#[test]
fn template_syntax_errors() {
    let cases = [
        ("{{ }}", 0, "empty"),
        ("a {{   }}", 2, "empty"),
        ("x {{ a", 2, "unclosed"),
        ("{{ 'a }}", 0, "never ends"),
        ("{{ `x` }}", 3, "literal JSON"),
        ("{{ foo(a) }}", 3, "unknown function `foo`"),
        ("{{ a[?lenght(b)] }}", 6, "did you mean `length`"),
        ("ok {{ length(a, b) }}", 6, "takes 1 argument, got 2"),
        ("{{ a = b }}", 5, "=="),
        ("{{ a. }}", 5, "found the end of the expression"),
        ("{{ a ] }}", 5, "found `]`"),
        ("{{ step.search-hn.x[ }}", 20, "found the end"),
        ("{{ 'a' }}{{ b.( }}", 14, ""),
        ("{{ &a }}", 3, "only allowed"),
    ];
    for (src, offset, message) in cases {
        let e = template_error(src);
        assert_eq!(e.offset, offset, "{src}: {e}");
        assert!(e.message.contains(message), "{src}: {}", e.message);
    }
}

#[test]
fn expr_parse_errors() {
    assert_eq!(Expr::parse("").unwrap_err().message, "empty expression");
    assert_eq!(Expr::parse("  \n").unwrap_err().message, "empty expression");
    assert!(Expr::parse("a b").is_err());
    assert!(Expr::parse("foo.bar-").is_ok()); // `bar-` after a dot is a quoted name
    let e = Expr::parse("step.search-hn.repos[?x ==]").unwrap_err();
    assert_eq!(e.offset, 26, "{e}");
}

#[test]
fn bare_expressions() {
    let ok = [
        ("params.n > `40`", "params.n > `40`"),
        ("{{ params.n > `40` }}", "params.n > `40`"),
        ("  {{ x }}\n", "x"),
        ("{{ {a: x} }}", "{a: x}"),
        ("contains(x, '{{')", "contains(x, '{{')"),
    ];
    for (src, source) in ok {
        assert_eq!(Expr::parse_bare(src).unwrap().source(), source, "{src}");
    }
    let bad = [
        ("{{ x }} y", 8, "text outside"),
        ("{{ x }}{{ y }}", 7, "not several"),
        ("x {{ y }}", 2, "`{{` inside"),
        ("{{ }}", 0, "empty"),
        ("", 0, "empty"),
        ("{{ x", 0, "unclosed"),
        ("{{ x }}z", 7, "text outside"),
    ];
    for (src, offset, message) in bad {
        let e = Expr::parse_bare(src).unwrap_err();
        assert_eq!(e.offset, offset, "{src}: {e}");
        assert!(e.message.contains(message), "{src}: {}", e.message);
    }
}

// ---- evaluation ----

#[test]
fn ordering_comparisons_on_non_numbers_give_null() {
    let ctx = spec_context();
    let cases = [
        ("'a' < 'b'", json!(null)),
        ("params.name > `1`", json!(null)),
        ("params.tags >= params.tags", json!(null)),
        ("params.nope <= `1`", json!(null)),
        ("params.n < `50`", json!(true)),
        ("params.n >= `42.0`", json!(true)),
        ("params.name == 'Ada'", json!(true)),
        ("params.tags == ['x', 'y']", json!(true)),
    ];
    for (src, expected) in cases {
        assert_eq!(
            Expr::parse(src).unwrap().eval(&ctx).unwrap(),
            expected,
            "{src}"
        );
    }
}

#[test]
fn missing_paths_are_null() {
    let ctx = spec_context();
    for src in [
        "params.nope.deeper",
        "step.x[0].y",
        "nope",
        "params.tags[5]",
        "params.n.x",
        "params[0]",
    ] {
        assert_eq!(
            Expr::parse(src).unwrap().eval(&ctx).unwrap(),
            Value::Null,
            "{src}"
        );
    }
}

#[test]
fn run_time_errors_are_readable() {
    let ctx = Context::new(&json!({"params": {"mixed": [1, "a"], "n": 3}}));
    let cases = [
        (
            "sort_by(params.mixed, &@)",
            "cannot evaluate `sort_by(params.mixed, &@)`: the `&expression` given to `sort_by` must give number for every element, got string",
        ),
        (
            "params.n | keys(@)",
            "cannot evaluate `params.n | keys(@)`: argument 1 of `keys` must be object, got number",
        ),
        (
            "sum(params.mixed)",
            "cannot evaluate `sum(params.mixed)`: argument 1 of `sum` must be array[number], got array",
        ),
    ];
    for (src, message) in cases {
        assert_eq!(
            Expr::parse(src).unwrap().eval(&ctx).unwrap_err().message,
            message
        );
    }
}

#[test]
fn typed_mixed_and_literal_templates() {
    let ctx = spec_context();
    let whole = Template::parse(" {{ params.tags }} ").unwrap();
    assert!(whole.whole().is_some() && whole.literal().is_none());
    assert_eq!(whole.eval(&ctx).unwrap(), json!(["x", "y"]));
    // A string field always renders; the literal whitespace around stays.
    assert_eq!(whole.render(&ctx).unwrap(), " [\"x\",\"y\"] ");

    let two = Template::parse("{{ params.n }}{{ params.n }}").unwrap();
    assert!(two.whole().is_none());
    assert_eq!(two.eval(&ctx).unwrap(), json!("4242"));
    assert_eq!(
        two.exprs().map(Expr::source).collect::<Vec<_>>(),
        ["params.n", "params.n"]
    );

    let null = Template::parse("{{ params.nope }}").unwrap();
    assert_eq!(null.eval(&ctx).unwrap(), Value::Null);
    assert_eq!(null.render(&ctx).unwrap(), "");

    let literal = Template::parse("a }} b { c").unwrap();
    assert_eq!(literal.literal(), Some("a }} b { c"));
    assert!(literal.whole().is_none() && literal.exprs().next().is_none());
    assert_eq!(literal.eval(&ctx).unwrap(), json!("a }} b { c"));
    assert_eq!(literal.render(&ctx).unwrap(), "a }} b { c");
    assert_eq!(Template::parse("").unwrap().literal(), Some(""));

    let floats = Template::parse("{{ `42.0` }} {{ `0.5` }} {{ `1e-7` }}").unwrap();
    assert_eq!(floats.render(&ctx).unwrap(), "42 0.5 1e-7");
    assert_eq!(typed("{{ `42.0` }}"), json!(42.0));
}

#[test]
fn plain_paths_and_literals_never_convert_the_context() {
    let ctx = spec_context();
    for src in [
        "{{ params.n }}",
        "{{ step.search-hn.repos[0] }}",
        "a {{ `1` }} {{ 'x' }}",
        "plain",
    ] {
        Template::parse(src).unwrap().render(&ctx).unwrap();
    }
    assert!(!ctx.is_converted());
    Template::parse("{{ length(params.tags) }}")
        .unwrap()
        .eval(&ctx)
        .unwrap();
    assert!(ctx.is_converted());
}

#[test]
fn eval_on_arbitrary_data() {
    let data = json!({"score": 0.9, "ktsu_error": null, "status": "active", "items": [1, 2]});
    let cases = [
        ("score > `0.5` && !ktsu_error", json!(true)),
        ("status == 'active'", json!(true)),
        (
            "{ title: status, n: length(items) }",
            json!({"title": "active", "n": 2}),
        ),
        ("items[-1]", json!(2)),
        ("@", data.clone()),
        ("`3`", json!(3)),
    ];
    for (src, expected) in cases {
        let e = Expr::parse_bare(src).unwrap();
        assert_eq!(e.eval_on(&data).unwrap(), expected, "{src}");
        assert_eq!(e.is_true_on(&data).unwrap(), is_truthy(&expected), "{src}");
    }
    assert_eq!(
        Expr::parse("@").unwrap().eval_on(&json!([1])).unwrap(),
        json!([1])
    );
}

#[test]
fn tvalue_compile_reports_every_failing_leaf() {
    let errors = TValue::compile(&json!({
        "a": {"b": ["ok", "{{ x", "{{ }}"]},
        "c": "{{ foo() }}",
        "d": 1
    }))
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["a.b[1]", "a.b[2]", "c"]);
    let top = TValue::compile(&json!("{{")).unwrap_err();
    assert_eq!(top[0].0, "");
}

#[test]
fn tvalue_null_policy_applies_to_nested_mappings_only() {
    let v = TValue::compile(&json!({
        "k": "{{ params.nope }}",
        "lit": null,
        "mixed": "x{{ params.nope }}",
        "nested": {"n": "{{ params.nope }}", "keep": "{{ params.n }}", "f": false},
        "seq": ["{{ params.nope }}", 1, {"inner": "{{ params.nope }}"}],
        "typed": "{{ params.tags }}"
    }))
    .unwrap();
    let ctx = spec_context();
    assert_eq!(
        v.eval(&ctx, NullPolicy::OmitNullEntries).unwrap(),
        json!({
            "lit": null,
            "mixed": "x",
            "nested": {"keep": 42, "f": false},
            "seq": [null, 1, {}],
            "typed": ["x", "y"]
        })
    );
    assert_eq!(
        v.eval(&ctx, NullPolicy::Keep).unwrap(),
        json!({
            "k": null,
            "lit": null,
            "mixed": "x",
            "nested": {"n": null, "keep": 42, "f": false},
            "seq": [null, 1, {"inner": null}],
            "typed": ["x", "y"]
        })
    );
    let failing = TValue::compile(&json!({"a": ["{{ length(params.n) }}"]})).unwrap();
    assert!(failing.eval(&ctx, NullPolicy::Keep).is_err());
}

#[test]
fn context_from_namespaces_and_derived() {
    let base = Context::from_namespaces([("params", json!({"a": 1})), ("env", json!({"E": "v"}))]);
    let item = base
        .with_namespace("item", json!({"url": "u"}))
        .with_namespace("item_index", json!(3));
    let t = Template::parse("{{ item.url }}#{{ item_index }}:{{ params.a }}{{ env.E }}").unwrap();
    assert_eq!(t.render(&item).unwrap(), "u#3:1v");
    let q = Expr::parse("[item_index, length(keys(params))]").unwrap();
    assert_eq!(q.eval(&item).unwrap(), json!([3, 1]));
    assert_eq!(q.eval(&base).unwrap(), json!([null, 1]));
}

#[test]
fn everything_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Expr>();
    check::<Template>();
    check::<TValue>();
    check::<Context>();
    check::<TemplateError>();
    check::<EvalError>();
}

/// The most deeply nested expressions the limits accept still evaluate on a test thread's
/// 2 MiB stack in a debug build; deeper ones are rejected, not crashed on.
#[test]
fn deepest_accepted_expressions_evaluate() {
    type Shape = fn(usize) -> String;
    let shapes: [Shape; 8] = [
        |n| format!("{}a{}", "(".repeat(n), ")".repeat(n)),
        |n| format!("{}a", "!".repeat(n)),
        |n| format!("a{}", ".b".repeat(n)),
        |n| format!("a{}", "[*].b".repeat(n)),
        |n| format!("{}a{}", "[".repeat(n), "]".repeat(n)),
        |n| format!("{}b{}", "{a:".repeat(n), "}".repeat(n)),
        |n| format!("a{}", "[]".repeat(n)),
        |n| format!("{}a{}", "not_null(".repeat(n), ")".repeat(n)),
    ];
    let data = json!({"a": {"b": [[1]]}});
    for shape in shapes {
        assert!(Expr::parse(&shape(5000)).is_err());
        let deepest = (1..=200)
            .rev()
            .find_map(|n| Expr::parse(&shape(n)).ok())
            .unwrap();
        deepest.eval_on(&data).unwrap();
        deepest.eval(&Context::new(&data)).unwrap();
    }
}

// ---- properties ----

mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::super::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
            // Big integers, as a JSON parser would read them (beyond u64 they become floats).
            "-?[1-9][0-9]{0,40}".prop_map(|s| serde_json::from_str(&s).unwrap()),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((".*", inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// Data whose keys come from a small alphabet, so that random paths find things.
    fn small_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::from),
            "[a-c]".prop_map(Value::String)
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-c]", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    /// Text made of the characters that matter to the scanner and the parser.
    fn template_soup() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{{"),
            Just("}}"),
            Just("{"),
            Just("}"),
            Just("'"),
            Just("\""),
            Just("`"),
            Just("\\"),
            Just(" "),
            Just("params"),
            Just("step"),
            Just("x-y"),
            Just("."),
            Just("["),
            Just("]"),
            Just("*"),
            Just("?"),
            Just("|"),
            Just("||"),
            Just("&"),
            Just("!"),
            Just("=="),
            Just("<"),
            Just("("),
            Just(")"),
            Just(","),
            Just(":"),
            Just("@"),
            Just("-1"),
            Just("0"),
            Just("length("),
            Just("sort_by("),
            Just("é"),
            Just("😀"),
            Just("\n"),
            Just("`1`"),
            Just("'in-progress'"),
        ];
        prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
    }

    /// `s` with every `{{` broken up, so that no placeholder can start.
    fn without_placeholders(s: &str) -> String {
        let mut s = s.to_string();
        while s.contains("{{") {
            s = s.replace("{{", "{ {");
        }
        s
    }

    fn reorder(v: &Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(reorder).collect()),
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> =
                    map.iter().map(|(k, v)| (k.clone(), reorder(v))).collect();
                entries.reverse();
                let half = entries.len() / 2;
                entries.rotate_left(half);
                Value::Object(entries.into_iter().collect::<Map<_, _>>())
            }
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn whole_placeholders_round_trip_any_value(v in json_value()) {
            let ctx = Context::new(&serde_json::json!({"params": {"x": v.clone()}}));
            let direct = Template::parse("{{ params.x }}").unwrap().eval(&ctx).unwrap();
            prop_assert_eq!(&direct, &v);
            // The same through the JMESPath interpreter.
            let interpreted = Template::parse("{{ not_null(params.x) }}").unwrap().eval(&ctx).unwrap();
            prop_assert_eq!(&interpreted, &v);
        }

        #[test]
        fn parsing_never_panics(
            src in prop_oneof![
                ".*",
                template_soup(),
                (template_soup(), template_soup()).prop_map(|(a, e)| format!("{a}{{{{ {e} }}}}")),
            ],
            data in small_json(),
        ) {
            let ctx = Context::from_namespaces([("params", data.clone()), ("step", data.clone())]);
            if let Ok(t) = Template::parse(&src) {
                let _ = t.eval(&ctx);
                let _ = t.render(&ctx);
            }
            if let Ok(e) = Expr::parse_bare(&src) {
                let _ = e.eval(&ctx);
                let _ = e.eval_on(&data);
                let _ = e.is_true_on(&data);
            }
        }

        #[test]
        fn text_without_placeholders_is_literal(
            src in prop_oneof![".*", template_soup()].prop_map(|s| without_placeholders(&s)),
        ) {
            let t = Template::parse(&src).unwrap();
            prop_assert_eq!(t.literal(), Some(src.as_str()));
            prop_assert!(t.whole().is_none());
            let ctx = Context::new(&serde_json::json!({}));
            prop_assert_eq!(t.render(&ctx).unwrap(), src.clone());
            prop_assert_eq!(t.eval(&ctx).unwrap(), Value::String(src));
        }

        #[test]
        fn object_text_ignores_key_order(v in json_value()) {
            let wrapped = serde_json::json!({"v": v, "a": 1, "z": [v]});
            prop_assert_eq!(format_text(&wrapped), format_text(&reorder(&wrapped)));
        }

        #[test]
        fn plain_paths_agree_with_the_interpreter(
            data in small_json(),
            steps in prop::collection::vec(prop_oneof!["[a-c]", (-3i32..3).prop_map(|i| format!("[{i}]"))], 1..5),
        ) {
            let mut src = String::from("@");
            for s in &steps {
                if !s.starts_with('[') { src.push('.'); }
                src.push_str(s);
            }
            let direct = Expr::parse(&src).unwrap().eval_on(&data).unwrap();
            // `to_array(…)[0]` forces the interpreter and is the identity on the value.
            let interpreted = Expr::parse(&format!("to_array({src})[0]")).unwrap().eval_on(&data).unwrap();
            let expected = match &direct { Value::Array(items) => items.first().cloned().unwrap_or(Value::Null), other => other.clone() };
            prop_assert_eq!(interpreted, expected);
        }
    }
}
