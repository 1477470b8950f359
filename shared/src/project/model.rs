//! The typed project model: one struct per file kind of config.md §2.
//!
//! Templates are compiled when a file is read, once per project load; the services evaluate the
//! compiled forms kept here. Positions (`Spanned`) are kept where a later cross-file check has
//! to report at the value.

use super::read::Spanned;
use crate::diag::Pos;
use crate::schema::CompiledSchema;
use crate::template::{Expr, TValue, Template};
use crate::yaml::Node;
use std::sync::Arc;
use std::time::Duration;

/// The kinds of configuration files (config.md §1.1); the names are those of
/// `ktsu validate --json` (`kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    Workflow,
    Agent,
    Server,
    ServersManifest,
    Gateway,
    Env,
    /// A gateway mock script (runtime-gateway.md §8.3), validated with its gateway file.
    MockScript,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Workflow => "workflow",
            FileKind::Agent => "agent",
            FileKind::Server => "server",
            FileKind::ServersManifest => "servers_manifest",
            FileKind::Gateway => "gateway",
            FileKind::Env => "env",
            FileKind::MockScript => "mock_script",
        }
    }

    /// The kind implied by a file name's suffix, if any.
    pub fn from_file_name(name: &str) -> Option<FileKind> {
        if name.ends_with(".workflow.yaml") {
            Some(FileKind::Workflow)
        } else if name.ends_with(".agent.yaml") {
            Some(FileKind::Agent)
        } else if name.ends_with(".server.yaml") {
            Some(FileKind::Server)
        } else if name.ends_with(".env.yaml") {
            Some(FileKind::Env)
        } else if name == "servers.yaml" {
            Some(FileKind::ServersManifest)
        } else {
            None
        }
    }
}

/// A compiled JSON Schema block with its location.
#[derive(Debug, Clone)]
pub struct SchemaField {
    pub value: serde_json::Value,
    pub pos: Pos,
    pub path: String,
    /// `None` when the schema does not compile (a `schema_invalid` diagnostic was reported).
    pub compiled: Option<Arc<CompiledSchema>>,
}

impl SchemaField {
    /// `properties.<name>` of an object schema.
    pub fn property(&self, name: &str) -> Option<&serde_json::Value> {
        self.value.get("properties")?.get(name)
    }

    pub fn has_property(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// Whether undeclared keys are accepted: `additionalProperties` present and not `false`.
    pub fn allows_additional(&self) -> bool {
        match self.value.get("additionalProperties") {
            None => false,
            Some(serde_json::Value::Bool(false)) => false,
            Some(_) => true,
        }
    }

    /// `properties.<name>.secret == true`.
    pub fn is_secret(&self, name: &str) -> bool {
        self.property(name)
            .and_then(|p| p.get("secret"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// Names of the `required` properties.
    pub fn required(&self) -> Vec<&str> {
        self.value
            .get("required")
            .and_then(serde_json::Value::as_array)
            .map(|r| r.iter().filter_map(serde_json::Value::as_str).collect())
            .unwrap_or_default()
    }

    pub fn has_default(&self, name: &str) -> bool {
        self.property(name)
            .is_some_and(|p| p.get("default").is_some())
    }

    /// Declared property names in declaration order.
    pub fn property_names(&self) -> Vec<&str> {
        self.value
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

/// A templated value of any shape, with its source node (for the positions of its leaves).
#[derive(Debug, Clone)]
pub struct Templated {
    pub node: Node,
    pub value: TValue,
}

/// An entry of a `name → template` map (step `params`, `input`, `output.map`, headers, …).
#[derive(Debug, Clone)]
pub struct TemplatedEntry {
    pub key: Spanned<String>,
    pub value: Templated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Root,
    SubWorkflow,
}

/// `webhooks: execute | suppress` (the dual opt-in of config.md §2.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookMode {
    Execute,
    Suppress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    Bearer,
    Raw,
}

/// An `env:` declaration of a root workflow or the gateway file.
#[derive(Debug, Clone)]
pub struct EnvDecl {
    pub name: Spanned<String>,
    pub secret: bool,
    pub default: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InvokeAuth {
    pub pos: Pos,
    pub header: String,
    pub scheme: AuthScheme,
    /// Exactly `{{ env.X }}` when valid; the env name is [`InvokeAuth::secret_env`].
    pub secret: Option<Spanned<Template>>,
}

impl InvokeAuth {
    /// The env var named by `secret` when it has the required `{{ env.X }}` form.
    pub fn secret_env(&self) -> Option<&str> {
        let t = self.secret.as_ref()?;
        match t.value.whole()?.single_path()? {
            ("env", name) => Some(name),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ModelPolicy {
    pub pos: Pos,
    pub cost_budget_usd: Option<f64>,
    pub timeout_s: Option<u64>,
    pub force_group: Option<Spanned<String>>,
    pub group_map: Vec<(Spanned<String>, Spanned<String>)>,
}

/// A `*.workflow.yaml` file (config.md §2.1).
#[derive(Debug, Clone)]
pub struct Workflow {
    pub name: Spanned<String>,
    pub version: Option<Spanned<String>>,
    pub description: Option<String>,
    pub visibility: Visibility,
    pub visibility_pos: Option<Pos>,
    pub webhooks: WebhookMode,
    pub env: Vec<EnvDecl>,
    pub env_pos: Option<Pos>,
    pub params_schema: Option<SchemaField>,
    pub invoke_auth: Option<InvokeAuth>,
    pub pipeline: Vec<Step>,
    pub output_map: Option<Vec<TemplatedEntry>>,
    pub output_schema: Option<SchemaField>,
    pub model_policy: Option<ModelPolicy>,
}

impl Workflow {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.pipeline.iter().find(|s| s.id.value == id)
    }

    pub fn env_decl(&self, name: &str) -> Option<&EnvDecl> {
        self.env.iter().find(|e| e.name.value == name)
    }

    pub fn is_root(&self) -> bool {
        self.visibility == Visibility::Root
    }
}

/// One pipeline step (config.md §2.2).
#[derive(Debug, Clone)]
pub struct Step {
    pub id: Spanned<String>,
    /// Position of the step's mapping (its first key).
    pub pos: Pos,
    /// YAML path of the step, `pipeline[<index>]`.
    pub path: String,
    pub index: usize,
    pub depends_on: Vec<Spanned<String>>,
    pub condition: Option<Spanned<Expr>>,
    pub timeout_s: Option<u64>,
    pub output_schema: Option<SchemaField>,
    pub kind: StepKind,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Agent(AgentStep),
    Transform(TransformStep),
    Webhook(WebhookStep),
    Workflow(SubWorkflowStep),
}

impl StepKind {
    /// The step type as recorded in run records (`agent`, `transform`, `webhook`, `workflow`).
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Agent(_) => "agent",
            StepKind::Transform(_) => "transform",
            StepKind::Webhook(_) => "webhook",
            StepKind::Workflow(_) => "workflow",
        }
    }
}

impl Step {
    /// An `on: approval` webhook: a notification hook outside the DAG (config.md §2.2.5).
    pub fn is_approval_hook(&self) -> bool {
        matches!(&self.kind, StepKind::Webhook(w) if w.on_approval)
    }
}

#[derive(Debug, Clone)]
pub struct AgentStep {
    pub agent: Spanned<String>,
    pub params: Vec<TemplatedEntry>,
    pub model_group: Option<Spanned<String>>,
    pub max_tokens: Option<u64>,
    pub confidence_threshold: Option<f64>,
    pub for_each: Option<ForEach>,
}

#[derive(Debug, Clone)]
pub struct ForEach {
    pub from: Spanned<Expr>,
    pub max_items: u64,
    pub concurrency: u64,
    pub max_failures: i64,
}

#[derive(Debug, Clone)]
pub struct TransformStep {
    pub inputs: Vec<TransformInput>,
    pub ops: Vec<TransformOp>,
}

#[derive(Debug, Clone)]
pub enum TransformInput {
    /// A bare step id: that step's whole visible output.
    Step(Spanned<String>),
    /// A `{{ … }}` template.
    Template(Spanned<Template>),
}

#[derive(Debug, Clone)]
pub struct TransformOp {
    pub pos: Pos,
    pub path: String,
    pub kind: OpKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone)]
pub enum OpKind {
    Merge(Vec<Spanned<String>>),
    Filter(Spanned<Expr>),
    Map(Spanned<Expr>),
    Sort {
        field: Spanned<Expr>,
        order: SortOrder,
    },
    Flatten,
    Deduplicate(Spanned<Expr>),
}

impl OpKind {
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Merge(_) => "merge",
            OpKind::Filter(_) => "filter",
            OpKind::Map(_) => "map",
            OpKind::Sort { .. } => "sort",
            OpKind::Flatten => "flatten",
            OpKind::Deduplicate(_) => "deduplicate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }

    /// GET and DELETE never carry a body (config.md §2.2.3).
    pub fn has_body(self) -> bool {
        !matches!(self, HttpMethod::Get | HttpMethod::Delete)
    }
}

#[derive(Debug, Clone)]
pub struct WebhookStep {
    /// `on: approval`.
    pub on_approval: bool,
    pub url: Spanned<Template>,
    pub method: HttpMethod,
    pub headers: Vec<TemplatedEntry>,
    pub body: Option<Templated>,
    pub timeout_s: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct SubWorkflowStep {
    pub workflow: Spanned<String>,
    pub params: Vec<TemplatedEntry>,
    pub input: Vec<TemplatedEntry>,
    pub webhooks: WebhookMode,
    /// Where `webhooks:` is written, when it is.
    pub webhooks_pos: Option<Pos>,
}

/// A `*.agent.yaml` file (config.md §2.4).
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub model: Spanned<String>,
    pub max_turns: u32,
    pub max_turns_pos: Option<Pos>,
    pub params_schema: Option<SchemaField>,
    pub system: Spanned<String>,
    pub user: Option<Spanned<Template>>,
    pub reflect: Option<Spanned<Template>>,
    pub servers: Vec<ServerRef>,
    pub output_schema: Option<SchemaField>,
}

#[derive(Debug, Clone)]
pub struct ServerRef {
    pub pos: Pos,
    pub path_prefix: String,
    pub name: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub params: Vec<(Spanned<String>, Spanned<Template>)>,
    /// `None` when `access` is absent, which means `["*"]`.
    pub allowlist: Option<Vec<AllowEntry>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReject {
    Fail,
    Recover,
}

impl OnReject {
    pub fn as_str(self) -> &'static str {
        match self {
            OnReject::Fail => "fail",
            OnReject::Recover => "recover",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutBehavior {
    Fail,
    Reject,
}

impl TimeoutBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutBehavior::Fail => "fail",
            TimeoutBehavior::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalPolicy {
    pub on_reject: OnReject,
    pub timeout: Option<Duration>,
    pub timeout_behavior: TimeoutBehavior,
}

#[derive(Debug, Clone)]
pub struct AllowEntry {
    pub pattern: Spanned<String>,
    pub approval: Option<ApprovalPolicy>,
}

/// A tool server: a `*.server.yaml` file or an entry of `servers.yaml` (config.md §2.5, §2.6).
#[derive(Debug, Clone)]
pub struct ToolServer {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub url: Spanned<String>,
    pub timeout_s: u64,
    pub auth: Option<ServerAuth>,
    pub params: Vec<ServerParam>,
}

impl ToolServer {
    pub fn param(&self, name: &str) -> Option<&ServerParam> {
        self.params.iter().find(|p| p.name.value == name)
    }
}

#[derive(Debug, Clone)]
pub struct ServerAuth {
    pub pos: Pos,
    pub header: String,
    pub scheme: AuthScheme,
    pub secret: Option<Spanned<Template>>,
}

impl ServerAuth {
    /// The server param named by `secret` when it has the required `{{ params.X }}` form.
    pub fn secret_param(&self) -> Option<&str> {
        let t = self.secret.as_ref()?;
        match t.value.whole()?.single_path()? {
            ("params", name) => Some(name),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerParam {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub default: Option<serde_json::Value>,
    pub secret: bool,
}

/// `servers.yaml` (config.md §2.6).
#[derive(Debug, Clone, Default)]
pub struct ServersManifest {
    pub servers: Vec<ToolServer>,
}

/// `gateway.yaml` (config.md §2.7).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub env: Vec<EnvDecl>,
    pub settings: GatewaySettings,
    pub providers: Vec<Provider>,
    pub model_groups: Vec<ModelGroup>,
}

impl GatewayConfig {
    pub fn group(&self, name: &str) -> Option<&ModelGroup> {
        self.model_groups.iter().find(|g| g.name.value == name)
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name.value == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub multiplier: f64,
    pub max_retry_after_s: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 2,
            initial_backoff_ms: 500,
            max_backoff_ms: 8000,
            multiplier: 2.0,
            max_retry_after_s: 30,
        }
    }
}

/// A per-group override of some retry fields.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RetryOverride {
    pub max_attempts: Option<u32>,
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub max_retry_after_s: Option<u64>,
}

impl RetryOverride {
    pub fn apply(&self, base: RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            initial_backoff_ms: self.initial_backoff_ms.unwrap_or(base.initial_backoff_ms),
            max_backoff_ms: self.max_backoff_ms.unwrap_or(base.max_backoff_ms),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            max_retry_after_s: self.max_retry_after_s.unwrap_or(base.max_retry_after_s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub cooldown_s: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 5,
            cooldown_s: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    pub request_timeout_s: u64,
    pub max_request_bytes: u64,
    pub budget_ledger_ttl_s: u64,
    pub retry: RetryPolicy,
    pub circuit_breaker: BreakerPolicy,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            request_timeout_s: 300,
            max_request_bytes: 16 * 1024 * 1024,
            budget_ledger_ttl_s: 3600,
            retry: RetryPolicy::default(),
            circuit_breaker: BreakerPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderType {
    Anthropic,
    OpenAi,
    Mock,
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Anthropic => "anthropic",
            ProviderType::OpenAi => "openai",
            ProviderType::Mock => "mock",
        }
    }
}

/// One value of a provider's `config` map: literal text with `{{ env.NAME }}` placeholders.
#[derive(Debug, Clone)]
pub struct ConfigValue {
    pub key: Spanned<String>,
    pub value: Spanned<String>,
    /// The env names referenced by placeholders, in order.
    pub env_refs: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: Spanned<String>,
    pub kind: ProviderType,
    pub config: Vec<ConfigValue>,
    pub timeout_s: u64,
    pub max_concurrency: u64,
    pub max_queue: u64,
}

impl Provider {
    pub fn config_value(&self, key: &str) -> Option<&ConfigValue> {
        self.config.iter().find(|c| c.key.value == key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    RoundRobin,
    Fallback,
    CostOptimized,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pricing {
    pub model: String,
    pub input_per_million: f64,
    pub output_per_million: f64,
    pub cache_read_per_million: Option<f64>,
    pub cache_write_per_million: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct ModelGroup {
    pub name: Spanned<String>,
    pub models: Vec<Spanned<String>>,
    pub strategy: Strategy,
    pub default_temperature: Option<f64>,
    pub default_max_tokens: Option<u64>,
    pub retry: RetryOverride,
    pub pricing: Vec<Pricing>,
}

/// `state:` of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateConfig {
    pub driver: String,
    pub dsn: String,
}

/// An `*.env.yaml` file (config.md §2.8).
#[derive(Debug, Clone)]
pub struct EnvFile {
    pub name: Spanned<String>,
    pub variables: Vec<(Spanned<String>, String)>,
    pub providers: Vec<Provider>,
    pub state: Option<StateConfig>,
}

impl EnvFile {
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.variables
            .iter()
            .find(|(k, _)| k.value == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A gateway mock script (runtime-gateway.md §8.3).
#[derive(Debug, Clone, Default)]
pub struct MockScript {
    pub rules: Vec<MockRule>,
}

#[derive(Debug, Clone, Default)]
pub struct MockMatch {
    pub model: Option<String>,
    pub group: Option<String>,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub agent: Option<String>,
    pub purpose: Option<String>,
    pub call: Option<u64>,
    pub last_user_contains: Option<String>,
    pub has_tool_result: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockUsage {
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockToolCall {
    pub id: Option<String>,
    pub name: String,
    pub arguments: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MockReplyKind {
    Content(String),
    Json(serde_json::Value),
    ToolCalls {
        calls: Vec<MockToolCall>,
        content: Option<String>,
    },
    Error {
        status: u16,
        message: String,
        retry_after_s: Option<u64>,
    },
    Generate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MockReply {
    pub kind: MockReplyKind,
    pub stop_reason: Option<String>,
    pub usage: Option<MockUsage>,
    pub latency_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct MockRule {
    pub when: MockMatch,
    pub times: Option<u64>,
    pub reply: MockReply,
}
