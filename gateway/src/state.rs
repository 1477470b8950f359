//! The gateway's shared state, built once at startup from the resolved configuration and shared
//! by every worker: providers (adapter + pool), models (breaker + price warnings), groups, the
//! budget ledgers, and the lifecycle. Per-worker state (HTTP clients, which are `!Send`) is
//! [`Upstreams`].

use crate::breaker::Breaker;
use crate::budget::Ledgers;
use crate::config::{mock_group, LoadedConfig, MOCK_DEFAULT_MODEL};
use crate::error::StartError;
use crate::pool::Pool;
use crate::pricing::{self, Price};
use crate::providers::Adapter;
use ktsu_shared::http::ClientSettings;
use ktsu_shared::project::{
    decode::gateway::split_model, GatewaySettings, ModelGroup, ProviderType, RetryPolicy, Strategy,
};
use ktsu_shared::secret::Secret;
use ktsu_shared::service::lifecycle::Lifecycle;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct ProviderState {
    pub name: String,
    pub kind: ProviderType,
    pub adapter: Adapter,
    pub pool: Pool,
    /// Limit of one upstream attempt.
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct ModelState {
    /// `provider/model-id`.
    pub full: String,
    pub provider: usize,
    /// The bare model id.
    pub id: String,
    pub breaker: Breaker,
    /// One `pricing.missing` warning per model per process.
    pub price_warned: AtomicBool,
}

/// One model of a group, with its price in that group.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub model: usize,
    pub price: Option<Price>,
}

#[derive(Debug)]
pub struct Group {
    pub candidates: Vec<Candidate>,
    pub strategy: Strategy,
    pub default_temperature: Option<f64>,
    pub default_max_tokens: Option<u64>,
    pub retry: RetryPolicy,
    /// Round-robin position: +1 per request.
    pub counter: AtomicU64,
}

/// Requests being handled, for the drain on shutdown.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts one request while alive.
#[derive(Debug)]
pub struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once no request is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[derive(Debug)]
pub struct Gateway {
    pub settings: GatewaySettings,
    pub providers: Vec<ProviderState>,
    pub models: Vec<ModelState>,
    groups: HashMap<String, Group>,
    /// `--mock` without a file: the group every name resolves to.
    any_group: Option<Group>,
    pub ledgers: Ledgers,
    pub internal_token: Option<Secret>,
    pub lifecycle: Lifecycle,
    pub in_flight: InFlight,
}

impl Gateway {
    /// Builds adapters, pools, breakers and price lists; a resolved value no adapter accepts is
    /// a configuration error (exit 3), every one reported.
    pub fn build(config: LoadedConfig, internal_token: Option<Secret>) -> Result<Self, StartError> {
        let mut errors = Vec::new();
        let mut providers = Vec::with_capacity(config.providers.len());
        for spec in &config.providers {
            match Adapter::build(spec) {
                Ok(adapter) => providers.push(ProviderState {
                    name: spec.name.clone(),
                    kind: spec.kind,
                    adapter,
                    pool: Pool::new(spec.max_concurrency, spec.max_queue),
                    timeout: Duration::from_secs(spec.timeout_s),
                }),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if !errors.is_empty() {
            return Err(StartError::InvalidConfig(errors));
        }
        let mut gateway = Gateway {
            settings: config.settings.clone(),
            providers,
            models: Vec::new(),
            groups: HashMap::new(),
            any_group: None,
            ledgers: Ledgers::new(Duration::from_secs(config.settings.budget_ledger_ttl_s)),
            internal_token: internal_token.filter(|t| !t.is_empty()),
            lifecycle: Lifecycle::new(),
            in_flight: InFlight::default(),
        };
        for group in &config.groups {
            let built = gateway.group_state(group)?;
            gateway.groups.insert(group.name.value.clone(), built);
        }
        if config.any_group_is_mock {
            let group = mock_group(MOCK_DEFAULT_MODEL);
            gateway.any_group = Some(gateway.group_state(&group)?);
        }
        Ok(gateway)
    }

    fn group_state(&mut self, group: &ModelGroup) -> Result<Group, StartError> {
        let mut candidates = Vec::with_capacity(group.models.len());
        for model in &group.models {
            let index = self.model_index(&model.value)?;
            let state = &self.models[index];
            let is_mock = self.providers[state.provider].kind == ProviderType::Mock;
            candidates.push(Candidate {
                model: index,
                price: pricing::lookup(&state.id, &group.pricing, !is_mock),
            });
        }
        Ok(Group {
            candidates,
            strategy: group.strategy,
            default_temperature: group.default_temperature,
            default_max_tokens: group.default_max_tokens,
            retry: group.retry.apply(self.settings.retry),
            counter: AtomicU64::new(0),
        })
    }

    /// The index of a model string, registered on first sight (one breaker per model string,
    /// shared by every group).
    fn model_index(&mut self, full: &str) -> Result<usize, StartError> {
        if let Some(i) = self.models.iter().position(|m| m.full == full) {
            return Ok(i);
        }
        let (provider, id) = split_model(full)
            .ok_or_else(|| StartError::Runtime(format!("model `{full}` has no provider prefix")))?;
        let provider = self
            .providers
            .iter()
            .position(|p| p.name == provider)
            .ok_or_else(|| {
                StartError::Runtime(format!("model `{full}` names an unknown provider"))
            })?;
        // Mock models cost 0 by design (runtime-gateway.md §8): a `pricing.missing` warning
        // for them would only be noise in every `ktsu run`, so they count as already warned.
        // The spec asks for one warning per unpriced model; this skips the mock ones on purpose.
        let is_mock = self.providers[provider].kind == ProviderType::Mock;
        self.models.push(ModelState {
            full: full.to_string(),
            provider,
            id: id.to_string(),
            breaker: Breaker::new(full, self.settings.circuit_breaker),
            price_warned: AtomicBool::new(is_mock),
        });
        Ok(self.models.len() - 1)
    }

    /// The group serving `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.get(name).or(self.any_group.as_ref())
    }

    pub fn group_count(&self) -> usize {
        self.groups.len() + usize::from(self.any_group.is_some())
    }

    /// The request body limit (`settings.max_request_bytes`).
    pub fn body_limit(&self) -> usize {
        usize::try_from(self.settings.max_request_bytes).unwrap_or(usize::MAX)
    }
}

/// One worker's HTTP clients, one per provider that calls out (`None` for the mock).
pub struct Upstreams {
    clients: Vec<Option<awc::Client>>,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstreams")
            .field(
                "clients",
                &self.clients.iter().filter(|c| c.is_some()).count(),
            )
            .finish()
    }
}

impl Upstreams {
    pub fn new(gateway: &Gateway) -> Self {
        let clients = gateway
            .providers
            .iter()
            .map(|p| {
                p.adapter
                    .needs_client()
                    .then(|| ClientSettings::new(p.timeout).build().ok())
                    .flatten()
            })
            .collect();
        Upstreams { clients }
    }

    pub fn client(&self, provider: usize) -> Option<&awc::Client> {
        self.clients.get(provider).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, ProviderSpec};
    use crate::settings::{GatewayFile, Settings};
    use std::collections::HashMap as Map;

    fn gateway(yaml: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = load(
            &Settings::local(GatewayFile::Path(path)),
            &Map::<String, String>::new(),
        )
        .unwrap();
        Gateway::build(config, None).unwrap()
    }

    #[test]
    fn breakers_are_per_model_string_and_prices_per_group() {
        let g = gateway(
            "providers:\n  - { name: a, type: openai, config: { base_url: \"http://127.0.0.1:9/v1\", api_key: k } }\n  - { name: m, type: mock }\nmodel_groups:\n  - { name: one, models: [a/gpt-4o-mini, m/claude-haiku-4-5], retry: { max_attempts: 4 } }\n  - name: two\n    models: [a/gpt-4o-mini]\n    pricing: [{ model: gpt-4o-mini, input_per_million: 1, output_per_million: 2 }]\n",
        );
        assert_eq!(
            g.models.len(),
            2,
            "a/gpt-4o-mini is one model in both groups"
        );
        let one = g.group("one").unwrap();
        let two = g.group("two").unwrap();
        assert_eq!(one.candidates[0].model, two.candidates[0].model);
        assert_eq!(one.candidates[0].price.unwrap().input, 0.15);
        assert_eq!(
            one.candidates[1].price, None,
            "mock models have no built-in price"
        );
        assert_eq!(two.candidates[0].price.unwrap().input, 1.0);
        assert_eq!(one.retry.max_attempts, 4);
        assert_eq!(two.retry.max_attempts, 2);
        assert!(g.group("three").is_none());
        let up = Upstreams::new(&g);
        assert!(up.client(0).is_some() && up.client(1).is_none());
    }

    #[test]
    fn mock_only_serves_every_name() {
        let config = load(
            &Settings::local(GatewayFile::MockOnly),
            &Map::<String, String>::new(),
        )
        .unwrap();
        let g = Gateway::build(config, Some(Secret::new(""))).unwrap();
        assert!(g.internal_token.is_none(), "an empty token means no check");
        let group = g.group("anything-at-all").unwrap();
        assert_eq!(g.models[group.candidates[0].model].full, "mock/default");
    }

    #[test]
    fn resolved_values_are_checked() {
        let spec = ProviderSpec {
            name: "m".into(),
            kind: ProviderType::Mock,
            values: vec![crate::config::ResolvedValue {
                key: "fail_status".into(),
                value: "7".into(),
                pos: ktsu_shared::diag::Pos::new(5, 9),
                path: "providers[0].config.fail_status".into(),
            }],
            timeout_s: 1,
            max_concurrency: 1,
            max_queue: 0,
            script: None,
            file: "gateway.yaml".into(),
        };
        let config = LoadedConfig {
            settings: GatewaySettings::default(),
            providers: vec![spec],
            groups: Vec::new(),
            any_group_is_mock: false,
            secrets: Vec::new(),
            warnings: Vec::new(),
        };
        let Err(StartError::InvalidConfig(d)) = Gateway::build(config, None) else {
            panic!("expected a config error");
        };
        assert_eq!((d[0].line, d[0].column), (Some(5), Some(9)));
    }

    #[actix_rt::test]
    async fn in_flight_drains() {
        let flight = InFlight::default();
        let guard = flight.enter();
        let mut idle = Box::pin(flight.idle());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(idle.as_mut(), &mut cx).is_pending());
        drop(guard);
        idle.await;
        assert_eq!(flight.count(), 0);
    }
}
