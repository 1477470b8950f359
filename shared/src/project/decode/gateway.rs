//! Reading `gateway.yaml`, environment files and gateway mock scripts (config.md §2.7, §2.8;
//! runtime-gateway.md §5.2, §8.3).

use super::common::{check_legacy, check_literal_text, env_decls, literal, req_literal};
use crate::diag::Pos;
use crate::project::model::{
    BreakerPolicy, ConfigValue, EnvDecl, EnvFile, GatewayConfig, GatewaySettings, MockMatch,
    MockReply, MockReplyKind, MockRule, MockScript, MockToolCall, MockUsage, ModelGroup, Pricing,
    Provider, ProviderType, RetryOverride, RetryPolicy, StateConfig, Strategy,
};
use crate::project::read::{index_path, key_path, Obj, Reader, Spanned};
use crate::yaml::{Node, NodeKind};

/// `^[A-Za-z0-9_-]+$`
pub fn is_provider_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `^[A-Za-z0-9_.-]+$`
pub fn is_group_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Config keys per provider type: (key, required, allowed values or empty for free text).
const ANTHROPIC_KEYS: &[(&str, bool, &[&str])] = &[
    ("api_key", true, &[]),
    ("base_url", false, &[]),
    ("anthropic_version", false, &[]),
    ("beta", false, &[]),
    ("prompt_cache", false, &["true", "false"]),
];
const OPENAI_KEYS: &[(&str, bool, &[&str])] = &[
    ("base_url", true, &[]),
    ("api_key", true, &[]),
    ("organization", false, &[]),
    ("project", false, &[]),
    (
        "max_tokens_param",
        false,
        &["auto", "max_tokens", "max_completion_tokens"],
    ),
    ("send_temperature", false, &["true", "false"]),
    ("json_schema_output", false, &["true", "false"]),
];
const MOCK_KEYS: &[(&str, bool, &[&str])] = &[
    ("latency_ms", false, &[]),
    ("fail_first", false, &[]),
    ("fail_status", false, &[]),
    ("fail_message", false, &[]),
    ("retry_after_s", false, &[]),
    ("tool_mode", false, &["none", "first", "each"]),
    ("script", false, &[]),
];
/// Mock keys whose value must be a non-negative integer.
const MOCK_INT_KEYS: &[&str] = &["latency_ms", "fail_first", "fail_status", "retry_after_s"];

fn config_keys(kind: ProviderType) -> &'static [(&'static str, bool, &'static [&'static str])] {
    match kind {
        ProviderType::Anthropic => ANTHROPIC_KEYS,
        ProviderType::OpenAi => OPENAI_KEYS,
        ProviderType::Mock => MOCK_KEYS,
    }
}

/// Where provider config values come from: the gateway file allows `{{ env.NAME }}`
/// placeholders; an env file is literal only.
#[derive(Clone, Copy)]
enum ConfigSource<'a> {
    Gateway(&'a [EnvDecl]),
    EnvFile,
}

pub fn read_gateway(r: &mut Reader, root: &Node) -> Option<GatewayConfig> {
    read_gateway_with_env_providers(r, root, &[])
}

/// [`read_gateway`] for a gateway started with `--env FILE`: `env_providers` (that file's
/// `providers`) replace or join the gateway file's providers, so model strings may also name
/// them (runtime-gateway.md §5.2).
pub fn read_gateway_with_env_providers(
    r: &mut Reader,
    root: &Node,
    env_providers: &[Provider],
) -> Option<GatewayConfig> {
    let obj = r.object(
        root,
        "",
        "gateway config",
        &["kind", "env", "settings", "providers", "model_groups"],
    )?;
    if let Some(node) = obj.get("kind") {
        r.one_of(node, "kind", &["gateway"]);
    }
    let env = obj
        .get("env")
        .map(|n| env_decls(r, n, "env"))
        .unwrap_or_default();
    let settings = obj
        .get("settings")
        .map(|n| read_settings(r, n))
        .unwrap_or_default();
    // `{{` is only meaningful in providers[].config (config.md §2.7 "Templates").
    for key in ["settings", "model_groups"] {
        if let Some(n) = obj.get(key) {
            forbid_templates(r, n, key);
        }
    }
    let providers = match obj.get("providers") {
        Some(n) => read_providers(r, n, "providers", ConfigSource::Gateway(&env)),
        None => Vec::new(),
    };
    if providers.is_empty() && obj.get("providers").is_none_or(|n| n.as_seq().is_some()) {
        r.missing(&obj, "", "providers", "gateway config");
    }
    let provider_names: Vec<&str> = providers
        .iter()
        .chain(env_providers)
        .map(|p| p.name.value.as_str())
        .collect();
    let model_groups = match obj.get("model_groups") {
        Some(n) => read_groups(r, n, &provider_names),
        None => Vec::new(),
    };
    if model_groups.is_empty() && obj.get("model_groups").is_none_or(|n| n.as_seq().is_some()) {
        r.missing(&obj, "", "model_groups", "gateway config");
    }
    Some(GatewayConfig {
        env,
        settings,
        providers,
        model_groups,
    })
}

/// Reports `template_not_allowed` for any `{{` below `node`.
fn forbid_templates(r: &mut Reader, node: &Node, path: &str) {
    match &node.kind {
        NodeKind::Scalar(s) => {
            if s.text.contains("{{") {
                r.error(
                    "template_not_allowed",
                    node.pos,
                    path,
                    format!("`{path}` is a literal field; templates are only allowed in providers[].config"),
                );
            }
        }
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                forbid_templates(r, item, &index_path(path, i));
            }
        }
        NodeKind::Map(entries) => {
            for e in entries {
                forbid_templates(r, &e.value, &key_path(path, &e.key));
            }
        }
    }
}

fn read_settings(r: &mut Reader, node: &Node) -> GatewaySettings {
    let mut s = GatewaySettings::default();
    let p = "settings";
    let Some(obj) = r.object(
        node,
        p,
        "gateway `settings`",
        &[
            "request_timeout_s",
            "max_request_bytes",
            "budget_ledger_ttl_s",
            "retry",
            "circuit_breaker",
        ],
    ) else {
        return s;
    };
    if let Some(v) = r.opt_u64(&obj, p, "request_timeout_s", 1) {
        s.request_timeout_s = v;
    }
    if let Some(v) = r.opt_u64(&obj, p, "max_request_bytes", 1) {
        s.max_request_bytes = v;
    }
    if let Some(v) = r.opt_u64(&obj, p, "budget_ledger_ttl_s", 1) {
        s.budget_ledger_ttl_s = v;
    }
    if let Some(n) = obj.get("retry") {
        s.retry = read_retry(r, n, "settings.retry").apply(RetryPolicy::default());
    }
    if let Some(n) = obj.get("circuit_breaker") {
        let bp = "settings.circuit_breaker";
        if let Some(b) = r.object(
            n,
            bp,
            "`circuit_breaker`",
            &["failure_threshold", "cooldown_s"],
        ) {
            let mut breaker = BreakerPolicy::default();
            if let Some(v) = r.opt_int(&b, bp, "failure_threshold", 1, i64::from(u32::MAX)) {
                breaker.failure_threshold = u32::try_from(v).unwrap_or(u32::MAX);
            }
            if let Some(v) = r.opt_u64(&b, bp, "cooldown_s", 1) {
                breaker.cooldown_s = v;
            }
            s.circuit_breaker = breaker;
        }
    }
    s
}

fn read_retry(r: &mut Reader, node: &Node, path: &str) -> RetryOverride {
    let mut o = RetryOverride::default();
    let Some(obj) = r.object(
        node,
        path,
        "`retry`",
        &[
            "max_attempts",
            "initial_backoff_ms",
            "max_backoff_ms",
            "multiplier",
            "max_retry_after_s",
        ],
    ) else {
        return o;
    };
    o.max_attempts = r
        .opt_int(&obj, path, "max_attempts", 1, i64::from(u32::MAX))
        .and_then(|v| u32::try_from(v).ok());
    o.initial_backoff_ms = r.opt_u64(&obj, path, "initial_backoff_ms", 0);
    o.max_backoff_ms = r.opt_u64(&obj, path, "max_backoff_ms", 0);
    o.multiplier = r.opt_number(&obj, path, "multiplier", 1.0, f64::MAX);
    o.max_retry_after_s = r.opt_u64(&obj, path, "max_retry_after_s", 0);
    o
}

fn read_providers(
    r: &mut Reader,
    node: &Node,
    path: &str,
    source: ConfigSource<'_>,
) -> Vec<Provider> {
    let mut providers: Vec<Provider> = Vec::new();
    for (i, item) in r.seq(node, path).unwrap_or_default().iter().enumerate() {
        let p = index_path(path, i);
        let Some(obj) = r.object(
            item,
            &p,
            "provider",
            &[
                "name",
                "type",
                "config",
                "timeout_s",
                "max_concurrency",
                "max_queue",
            ],
        ) else {
            continue;
        };
        let name = req_literal(r, &obj, &p, "name", "provider")
            .filter(|n| r.check_pattern(n, is_provider_name, "`^[A-Za-z0-9_-]+$`"));
        if let Some(n) = &name {
            if let Some(first) = providers.iter().find(|f| f.name.value == n.value) {
                r.duplicate_name("provider", n, first.name.pos);
                continue;
            }
        }
        let kind = match obj.get("type") {
            None => {
                r.missing(&obj, &p, "type", "provider");
                None
            }
            Some(t) => r
                .one_of(t, &key_path(&p, "type"), &["anthropic", "openai", "mock"])
                .map(|v| match v.value {
                    "anthropic" => ProviderType::Anthropic,
                    "openai" => ProviderType::OpenAi,
                    _ => ProviderType::Mock,
                }),
        };
        let timeout_s = r.opt_u64(&obj, &p, "timeout_s", 1).unwrap_or(120);
        let max_concurrency = r.opt_u64(&obj, &p, "max_concurrency", 1).unwrap_or(32);
        let max_queue = r.opt_u64(&obj, &p, "max_queue", 0).unwrap_or(256);
        let (Some(name), Some(kind)) = (name, kind) else {
            continue;
        };
        let config = read_provider_config(r, &obj, &p, kind, source);
        providers.push(Provider {
            name,
            kind,
            config,
            timeout_s,
            max_concurrency,
            max_queue,
        });
    }
    providers
}

fn read_provider_config(
    r: &mut Reader,
    obj: &Obj<'_>,
    path: &str,
    kind: ProviderType,
    source: ConfigSource<'_>,
) -> Vec<ConfigValue> {
    let cp = key_path(path, "config");
    let keys = config_keys(kind);
    let allowed: Vec<&str> = keys.iter().map(|(k, _, _)| *k).collect();
    let mut values = Vec::new();
    let entries = match obj.get("config") {
        None => &[][..],
        Some(n) if n.is_null() => &[][..],
        Some(n) => match r.object(
            n,
            &cp,
            &format!("{} provider `config`", kind.as_str()),
            &allowed,
        ) {
            Some(o) => o.entries(),
            None => return values,
        },
    };
    for e in entries {
        let Some(&(key, _, choices)) = keys.iter().find(|(k, _, _)| *k == e.key) else {
            continue;
        };
        let vp = key_path(&cp, key);
        let Some(value) = r.string(&e.value, &vp) else {
            continue;
        };
        let env_refs = match source {
            ConfigSource::Gateway(env) => match config_placeholders(r, &value, env) {
                Some(refs) => refs,
                None => continue,
            },
            ConfigSource::EnvFile => {
                if !check_literal_text(r, &value.value, value.pos, &vp) {
                    continue;
                }
                Vec::new()
            }
        };
        // Values with placeholders are only known at startup; literal ones are checked now.
        if env_refs.is_empty() {
            if !choices.is_empty() && !choices.contains(&value.value.as_str()) {
                r.error(
                    "invalid_value",
                    value.pos,
                    &vp,
                    format!(
                        "`{key}` must be one of {}, found `{}`",
                        choices.join(", "),
                        value.value
                    ),
                );
            }
            if kind == ProviderType::Mock
                && MOCK_INT_KEYS.contains(&key)
                && value.value.parse::<u64>().is_err()
            {
                r.error(
                    "invalid_value",
                    value.pos,
                    &vp,
                    format!(
                        "`{key}` must be a non-negative integer, found `{}`",
                        value.value
                    ),
                );
            }
            if key == "base_url" && !super::workflow::is_http_url(&value.value) {
                r.error(
                    "invalid_value",
                    value.pos,
                    &vp,
                    format!("`{}` is not an absolute http(s) URL", value.value),
                );
            }
        }
        values.push(ConfigValue {
            key: Spanned::new(key.to_string(), e.key_pos, vp),
            value,
            env_refs,
        });
    }
    for (key, required, _) in keys {
        if *required && !values.iter().any(|v| v.key.value == *key) {
            let (pos, p) = match obj.get("config") {
                Some(n) => (n.pos, cp.clone()),
                None => (obj.node.pos, path.to_string()),
            };
            r.error(
                "missing_field",
                pos,
                &p,
                format!(
                    "{} provider config is missing the required key `{key}`",
                    kind.as_str()
                ),
            );
        }
    }
    values
}

/// Checks the `{{ env.NAME }}` placeholders of one config value; returns the names, or None
/// when a diagnostic was reported.
fn config_placeholders(
    r: &mut Reader,
    value: &Spanned<String>,
    env: &[EnvDecl],
) -> Option<Vec<String>> {
    if value.value.trim_start().starts_with("env:") {
        check_legacy(r, &value.value, value.pos, &value.path);
        return None;
    }
    let mut refs = Vec::new();
    let mut rest = value.value.as_str();
    let mut ok = true;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            r.error(
                "template_syntax",
                value.pos,
                &value.path,
                "unterminated `{{` placeholder",
            );
            return None;
        };
        let inner = after[..end].trim();
        match inner.strip_prefix("env.") {
            Some(name) if super::common::is_identifier(name) => {
                if env.iter().any(|d| d.name.value == name) {
                    refs.push(name.to_string());
                } else {
                    r.error(
                        "undeclared_env",
                        value.pos,
                        &value.path,
                        format!(
                            "env var `{name}` is not declared in the gateway file's `env:` list"
                        ),
                    );
                    ok = false;
                }
            }
            _ => {
                r.error(
                    "template_syntax",
                    value.pos,
                    &value.path,
                    format!("only `{{{{ env.NAME }}}}` placeholders are allowed in provider config, found `{{{{ {inner} }}}}`"),
                );
                ok = false;
            }
        }
        rest = &after[end + 2..];
    }
    ok.then_some(refs)
}

/// Splits a model string at the first `/` into (provider, model id).
pub fn split_model(s: &str) -> Option<(&str, &str)> {
    s.split_once('/')
}

fn read_groups(r: &mut Reader, node: &Node, providers: &[&str]) -> Vec<ModelGroup> {
    let mut groups: Vec<ModelGroup> = Vec::new();
    for (i, item) in r
        .seq(node, "model_groups")
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let p = index_path("model_groups", i);
        let Some(obj) = r.object(
            item,
            &p,
            "model group",
            &[
                "name",
                "models",
                "strategy",
                "default_temperature",
                "default_max_tokens",
                "retry",
                "pricing",
            ],
        ) else {
            continue;
        };
        let name = req_literal(r, &obj, &p, "name", "model group")
            .filter(|n| r.check_pattern(n, is_group_name, "`^[A-Za-z0-9_.-]+$`"));
        if let Some(n) = &name {
            if let Some(first) = groups.iter().find(|g| g.name.value == n.value) {
                r.duplicate_name("model group", n, first.name.pos);
                continue;
            }
        }
        let mut models = Vec::new();
        match obj.get("models") {
            None => r.missing(&obj, &p, "models", "model group"),
            Some(n) => {
                let list = r
                    .string_list(n, &key_path(&p, "models"))
                    .unwrap_or_default();
                if list.is_empty() && n.as_seq().is_some() {
                    r.missing(&obj, &p, "models", "model group");
                }
                for m in list {
                    match split_model(&m.value) {
                        Some((prov, id)) if providers.contains(&prov) && !id.is_empty() => models.push(m),
                        Some((prov, id)) if !id.is_empty() => r.error(
                            "unknown_provider",
                            m.pos,
                            &m.path,
                            format!("model `{}` names provider `{prov}`, which is not declared in `providers`", m.value),
                        ),
                        _ => r.error(
                            "unknown_provider",
                            m.pos,
                            &m.path,
                            format!("model `{}` must have the form `provider/model-id`", m.value),
                        ),
                    }
                }
            }
        }
        let strategy = match r.opt_one_of(
            &obj,
            &p,
            "strategy",
            &["round_robin", "fallback", "cost_optimized"],
        ) {
            Some(s) if s.value == "fallback" => Strategy::Fallback,
            Some(s) if s.value == "cost_optimized" => Strategy::CostOptimized,
            _ => Strategy::RoundRobin,
        };
        let default_temperature = r.opt_number(&obj, &p, "default_temperature", 0.0, 2.0);
        let default_max_tokens = r.opt_u64(&obj, &p, "default_max_tokens", 1);
        let retry = obj
            .get("retry")
            .map(|n| read_retry(r, n, &key_path(&p, "retry")))
            .unwrap_or_default();
        let pricing = obj
            .get("pricing")
            .map(|n| read_pricing(r, n, &key_path(&p, "pricing")))
            .unwrap_or_default();
        if let Some(name) = name {
            groups.push(ModelGroup {
                name,
                models,
                strategy,
                default_temperature,
                default_max_tokens,
                retry,
                pricing,
            });
        }
    }
    groups
}

fn read_pricing(r: &mut Reader, node: &Node, path: &str) -> Vec<Pricing> {
    let mut prices = Vec::new();
    for (i, item) in r.seq(node, path).unwrap_or_default().iter().enumerate() {
        let p = index_path(path, i);
        let Some(obj) = r.object(
            item,
            &p,
            "pricing entry",
            &[
                "model",
                "input_per_million",
                "output_per_million",
                "cache_read_per_million",
                "cache_write_per_million",
            ],
        ) else {
            continue;
        };
        let model = req_literal(r, &obj, &p, "model", "pricing entry");
        let mut price = |key: &str, required: bool| -> Option<f64> {
            match obj.get(key) {
                None => {
                    if required {
                        r.missing(&obj, &p, key, "pricing entry");
                    }
                    None
                }
                Some(n) => r.number(n, &key_path(&p, key), 0.0, f64::MAX),
            }
        };
        let input = price("input_per_million", true);
        let output = price("output_per_million", true);
        let cache_read = price("cache_read_per_million", false);
        let cache_write = price("cache_write_per_million", false);
        if let (Some(model), Some(input), Some(output)) = (model, input, output) {
            prices.push(Pricing {
                model: model.value,
                input_per_million: input,
                output_per_million: output,
                cache_read_per_million: cache_read,
                cache_write_per_million: cache_write,
            });
        }
    }
    prices
}

/// `^[A-Za-z_][A-Za-z0-9_]*$` for env file variable names.
pub fn read_env_file(r: &mut Reader, root: &Node) -> Option<EnvFile> {
    let obj = r.object(
        root,
        "",
        "environment file",
        &["kind", "name", "variables", "providers", "state"],
    )?;
    if let Some(node) = obj.get("kind") {
        r.one_of(node, "kind", &["env"]);
    }
    let name = req_literal(r, &obj, "", "name", "environment file");
    let mut variables = Vec::new();
    if let Some(n) = obj.get("variables") {
        match n.as_map() {
            Some(entries) => {
                for e in entries {
                    let p = key_path("variables", &e.key);
                    if !super::common::is_identifier(&e.key) {
                        r.error(
                            "invalid_value",
                            e.key_pos,
                            &p,
                            format!(
                                "variable name `{}` must match `^[A-Za-z_][A-Za-z0-9_]*$`",
                                e.key
                            ),
                        );
                        continue;
                    }
                    if let Some(v) = literal(r, &e.value, &p) {
                        variables.push((Spanned::new(e.key.clone(), e.key_pos, p), v.value));
                    }
                }
            }
            None => r.type_mismatch(n, "variables", "a mapping of NAME → string"),
        }
    }
    let providers = obj
        .get("providers")
        .map(|n| read_providers(r, n, "providers", ConfigSource::EnvFile))
        .unwrap_or_default();
    let state = obj.get("state").and_then(|n| {
        let o = r.object(n, "state", "`state`", &["driver", "dsn"])?;
        let driver = match o.get("driver") {
            None => {
                r.missing(&o, "state", "driver", "`state`");
                return None;
            }
            Some(d) => {
                let s = literal(r, d, "state.driver")?;
                match s.value.as_str() {
                    "memory" | "sqlite" => s.value,
                    "postgres" => {
                        r.error(
                            "invalid_value",
                            s.pos,
                            "state.driver",
                            "store driver `postgres` is not supported yet",
                        );
                        return None;
                    }
                    other => {
                        r.error(
                            "invalid_value",
                            s.pos,
                            "state.driver",
                            format!("`state.driver` must be `memory` or `sqlite`, found `{other}`"),
                        );
                        return None;
                    }
                }
            }
        };
        let dsn = o
            .get("dsn")
            .and_then(|d| literal(r, d, "state.dsn"))
            .map_or_else(|| "ktsu.db".to_string(), |s| s.value);
        Some(StateConfig { driver, dsn })
    });
    Some(EnvFile {
        name: name?,
        variables,
        providers,
        state,
    })
}

const STOP_REASONS: &[&str] = &[
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "content_filter",
    "refusal",
    "other",
];

/// A gateway mock script (runtime-gateway.md §8.3): strictly validated at startup.
pub fn read_mock_script(r: &mut Reader, root: &Node) -> Option<MockScript> {
    let obj = r.object(root, "", "mock script", &["rules"])?;
    let Some(list) = obj.get("rules") else {
        r.missing(&obj, "", "rules", "mock script");
        return None;
    };
    let mut rules = Vec::new();
    for (i, item) in r.seq(list, "rules").unwrap_or_default().iter().enumerate() {
        let p = index_path("rules", i);
        let Some(o) = r.object(item, &p, "mock rule", &["match", "times", "reply"]) else {
            continue;
        };
        let when = o
            .get("match")
            .map(|n| read_mock_match(r, n, &key_path(&p, "match")))
            .unwrap_or_default();
        let times = r.opt_u64(&o, &p, "times", 1);
        let reply = match o.get("reply") {
            None => {
                r.missing(&o, &p, "reply", "mock rule");
                continue;
            }
            Some(n) => match read_mock_reply(r, n, &key_path(&p, "reply")) {
                Some(reply) => reply,
                None => continue,
            },
        };
        rules.push(MockRule { when, times, reply });
    }
    Some(MockScript { rules })
}

fn read_mock_match(r: &mut Reader, node: &Node, path: &str) -> MockMatch {
    let mut m = MockMatch::default();
    if node.is_null() {
        return m;
    }
    let Some(o) = r.object(
        node,
        path,
        "mock `match`",
        &[
            "model",
            "group",
            "run_id",
            "step_id",
            "agent",
            "purpose",
            "call",
            "last_user_contains",
            "has_tool_result",
        ],
    ) else {
        return m;
    };
    let text = |r: &mut Reader, key: &str| r.opt_string(&o, path, key).map(|s| s.value);
    m.model = text(r, "model");
    m.group = text(r, "group");
    m.run_id = text(r, "run_id");
    m.step_id = text(r, "step_id");
    m.agent = text(r, "agent");
    m.purpose = text(r, "purpose");
    m.last_user_contains = text(r, "last_user_contains");
    m.call = r.opt_u64(&o, path, "call", 1);
    m.has_tool_result = r.opt_bool(&o, path, "has_tool_result");
    m
}

fn read_mock_reply(r: &mut Reader, node: &Node, path: &str) -> Option<MockReply> {
    let o = r.object(
        node,
        path,
        "mock `reply`",
        &[
            "content",
            "json",
            "tool_calls",
            "error",
            "generate",
            "stop_reason",
            "usage",
            "latency_ms",
        ],
    )?;
    let kinds: Vec<&str> = ["json", "tool_calls", "error", "generate"]
        .into_iter()
        .filter(|k| o.has(k))
        .collect();
    let has_content = o.has("content");
    let valid_combo = match kinds.as_slice() {
        [] => has_content,
        ["tool_calls"] => true,
        [_] => !has_content,
        _ => false,
    };
    if !valid_combo {
        r.error(
            "invalid_value",
            node.pos,
            path,
            "a mock reply needs exactly one of `content`, `json`, `tool_calls` (optionally with `content`), `error` or `generate`",
        );
        return None;
    }
    let content = o
        .get("content")
        .and_then(|n| r.string(n, &key_path(path, "content")))
        .map(|s| s.value);
    let kind = match kinds.first().copied() {
        None => MockReplyKind::Content(content.unwrap_or_default()),
        Some("json") => {
            let n = o.get("json")?;
            match n.to_json() {
                Ok(v) => MockReplyKind::Json(v),
                Err(pos) => {
                    r.error(
                        "invalid_value",
                        pos,
                        &key_path(path, "json"),
                        "`.inf` and `.nan` are not allowed",
                    );
                    return None;
                }
            }
        }
        Some("tool_calls") => {
            let tp = key_path(path, "tool_calls");
            let items = r.seq(o.get("tool_calls")?, &tp)?;
            let mut calls = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ip = index_path(&tp, i);
                let Some(c) = r.object(item, &ip, "mock tool call", &["id", "name", "arguments"])
                else {
                    continue;
                };
                let Some(name) = r.req_string(&c, &ip, "name", "mock tool call") else {
                    continue;
                };
                let arguments = match c.get("arguments") {
                    None => serde_json::Value::Object(serde_json::Map::new()),
                    Some(a) => match a.to_json() {
                        Ok(v) => v,
                        Err(pos) => {
                            r.error(
                                "invalid_value",
                                pos,
                                &key_path(&ip, "arguments"),
                                "`.inf` and `.nan` are not allowed",
                            );
                            continue;
                        }
                    },
                };
                calls.push(MockToolCall {
                    id: r.opt_string(&c, &ip, "id").map(|s| s.value),
                    name: name.value,
                    arguments,
                });
            }
            MockReplyKind::ToolCalls { calls, content }
        }
        Some("error") => {
            let ep = key_path(path, "error");
            let e = r.object(
                o.get("error")?,
                &ep,
                "mock `error`",
                &["status", "message", "retry_after_s"],
            )?;
            let status = match e.get("status") {
                None => {
                    r.missing(&e, &ep, "status", "mock `error`");
                    return None;
                }
                Some(s) => u16::try_from(r.int(s, &key_path(&ep, "status"), 100, 599)?).ok()?,
            };
            MockReplyKind::Error {
                status,
                message: r
                    .opt_string(&e, &ep, "message")
                    .map_or_else(|| "mock failure".to_string(), |s| s.value),
                retry_after_s: r.opt_u64(&e, &ep, "retry_after_s", 0),
            }
        }
        Some(_) => {
            let g = o.get("generate")?;
            if r.bool(g, &key_path(path, "generate")) != Some(true) {
                r.error(
                    "invalid_value",
                    g.pos,
                    &key_path(path, "generate"),
                    "`generate` must be `true`",
                );
                return None;
            }
            MockReplyKind::Generate
        }
    };
    let stop_reason = r
        .opt_one_of(&o, path, "stop_reason", STOP_REASONS)
        .map(|s| s.value.to_string());
    let usage = o.get("usage").and_then(|n| {
        let up = key_path(path, "usage");
        let u = r.object(
            n,
            &up,
            "mock `usage`",
            &[
                "tokens_in",
                "tokens_out",
                "cache_read_tokens",
                "cache_write_tokens",
            ],
        )?;
        Some(MockUsage {
            tokens_in: r.opt_u64(&u, &up, "tokens_in", 0),
            tokens_out: r.opt_u64(&u, &up, "tokens_out", 0),
            cache_read_tokens: r.opt_u64(&u, &up, "cache_read_tokens", 0),
            cache_write_tokens: r.opt_u64(&u, &up, "cache_write_tokens", 0),
        })
    });
    let latency_ms = r.opt_u64(&o, path, "latency_ms", 0);
    Some(MockReply {
        kind,
        stop_reason,
        usage,
        latency_ms,
    })
}

/// The position to report a whole-file finding at when a value has none.
pub fn file_start() -> Pos {
    Pos::new(1, 1)
}
