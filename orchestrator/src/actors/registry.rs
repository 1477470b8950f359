//! The RuntimeRegistry (orchestrator.md §2.13, §5.2.3, §7.3): runtimes known by registration,
//! heartbeat or configuration, their liveness, and the least-loaded selection of a runtime for a
//! dispatch. Memory only: it is rebuilt from heartbeats after a restart.

use actix::prelude::*;
use ktsu_shared::time::Timestamp;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Register,
    Heartbeat,
    Config,
}

/// One runtime.
#[derive(Debug, Clone)]
struct Entry {
    url: Option<String>,
    version: Option<String>,
    max_concurrency: Option<u64>,
    source: Source,
    registered_at: Timestamp,
    last_seen_at: Timestamp,
    last_seen: Instant,
    draining: bool,
    cooling_until: Option<Instant>,
    last_selected: Option<Instant>,
    /// Step addresses (run id + address) dispatched here and not yet finished.
    active: HashSet<String>,
}

/// A runtime as `GET /runtimes` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RuntimeView {
    pub runtime_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub status: &'static str,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u64>,
    pub active_steps: usize,
    pub registered_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// The chosen runtime of a dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    pub runtime_id: String,
    pub url: String,
}

/// The id under which `KTSU_RUNTIME_URL` is known.
pub const CONFIG_ID: &str = "config";

pub struct RuntimeRegistry {
    entries: HashMap<String, Entry>,
    /// Liveness window: the heartbeat timeout, or 30 s when supervision is off.
    live_for: Duration,
    fallback: Option<String>,
}

impl RuntimeRegistry {
    pub fn new(live_for: Duration, fallback: Option<String>) -> Self {
        RuntimeRegistry {
            entries: HashMap::new(),
            live_for,
            fallback,
        }
    }

    fn is_live(&self, e: &Entry, now: Instant) -> bool {
        e.source == Source::Config || now.duration_since(e.last_seen) <= self.live_for
    }

    fn upsert(&mut self, id: &str, url: Option<String>, source: Source) -> &mut Entry {
        let now = Timestamp::now();
        let entry = self.entries.entry(id.to_string()).or_insert_with(|| Entry {
            url: None,
            version: None,
            max_concurrency: None,
            source,
            registered_at: now,
            last_seen_at: now,
            last_seen: Instant::now(),
            draining: false,
            cooling_until: None,
            last_selected: None,
            active: HashSet::new(),
        });
        if let Some(u) = url {
            entry.url = Some(u);
        }
        if source == Source::Register {
            entry.source = Source::Register;
            entry.registered_at = now;
        }
        entry.last_seen_at = now;
        entry.last_seen = Instant::now();
        entry
    }
}

impl Actor for RuntimeRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Lost entries are removed after five minutes.
        ctx.run_interval(Duration::from_secs(30), |this, _| {
            let now = Instant::now();
            let keep_for = this.live_for + Duration::from_secs(300);
            this.entries.retain(|_, e| {
                e.source == Source::Config || now.duration_since(e.last_seen) <= keep_for
            });
        });
    }
}

/// `POST /runtimes/register`.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Register {
    pub runtime_id: String,
    pub url: String,
    pub version: Option<String>,
    pub max_concurrency: Option<u64>,
}

impl Handler<Register> for RuntimeRegistry {
    type Result = bool;
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> bool {
        let existed = self.entries.contains_key(&msg.runtime_id);
        let e = self.upsert(&msg.runtime_id, Some(msg.url), Source::Register);
        e.version = msg.version.or(e.version.take());
        e.max_concurrency = msg.max_concurrency.or(e.max_concurrency);
        e.draining = false;
        !existed
    }
}

/// A heartbeat's registry part: liveness, URL and draining flag.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Seen {
    pub runtime_id: String,
    pub url: Option<String>,
    pub version: Option<String>,
    pub max_concurrency: Option<u64>,
    pub draining: bool,
}

impl Handler<Seen> for RuntimeRegistry {
    type Result = bool;
    fn handle(&mut self, msg: Seen, _: &mut Context<Self>) -> bool {
        let existed = self.entries.contains_key(&msg.runtime_id);
        let e = self.upsert(&msg.runtime_id, msg.url, Source::Heartbeat);
        if msg.version.is_some() {
            e.version = msg.version;
        }
        if msg.max_concurrency.is_some() {
            e.max_concurrency = msg.max_concurrency;
        }
        e.draining = msg.draining;
        !existed
    }
}

/// Picks the live, non-draining, non-cooling runtime with the fewest active steps (ties: least
/// recently selected); else the configured fallback (orchestrator.md §5.2.3).
#[derive(Message)]
#[rtype(result = "Option<Chosen>")]
pub struct Select;

impl Handler<Select> for RuntimeRegistry {
    type Result = Option<Chosen>;
    fn handle(&mut self, _: Select, _: &mut Context<Self>) -> Option<Chosen> {
        let now = Instant::now();
        let best = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.source != Source::Config
                    && e.url.is_some()
                    && !e.draining
                    && self.is_live(e, now)
                    && e.cooling_until.is_none_or(|t| t <= now)
            })
            .min_by_key(|(_, e)| (e.active.len(), e.last_selected))
            .map(|(id, _)| id.clone());
        if let Some(id) = best {
            let e = self.entries.get_mut(&id)?;
            e.last_selected = Some(now);
            return Some(Chosen {
                runtime_id: id,
                url: e.url.clone()?,
            });
        }
        let url = self.fallback.clone()?;
        let cooling = self
            .entries
            .get(CONFIG_ID)
            .and_then(|e| e.cooling_until)
            .is_some_and(|t| t > now);
        (!cooling).then(|| Chosen {
            runtime_id: CONFIG_ID.to_string(),
            url,
        })
    }
}

/// A runtime refused or failed a dispatch: skip it for a while.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CoolDown {
    pub runtime_id: String,
    pub for_: Duration,
}

impl Handler<CoolDown> for RuntimeRegistry {
    type Result = ();
    fn handle(&mut self, msg: CoolDown, _: &mut Context<Self>) {
        let until = Instant::now() + msg.for_;
        if msg.runtime_id == CONFIG_ID {
            let e = self.upsert(CONFIG_ID, self.fallback.clone(), Source::Config);
            e.cooling_until = Some(until);
        } else if let Some(e) = self.entries.get_mut(&msg.runtime_id) {
            e.cooling_until = Some(until);
        }
    }
}

/// Active-step bookkeeping: a dispatch was accepted (`add`) or its step left `running` (`!add`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Active {
    pub runtime_id: String,
    pub key: String,
    pub add: bool,
}

impl Handler<Active> for RuntimeRegistry {
    type Result = ();
    fn handle(&mut self, msg: Active, _: &mut Context<Self>) {
        if let Some(e) = self.entries.get_mut(&msg.runtime_id) {
            if msg.add {
                e.active.insert(msg.key);
            } else {
                e.active.remove(&msg.key);
            }
        }
    }
}

/// The URL of a runtime by id (cancel notices go to the runtime of the attempt).
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct UrlOf(pub String);

impl Handler<UrlOf> for RuntimeRegistry {
    type Result = Option<String>;
    fn handle(&mut self, msg: UrlOf, _: &mut Context<Self>) -> Option<String> {
        if msg.0 == CONFIG_ID {
            return self.fallback.clone();
        }
        self.entries.get(&msg.0).and_then(|e| e.url.clone())
    }
}

/// `GET /runtimes`, and the health check's "is any runtime live".
#[derive(Message)]
#[rtype(result = "Vec<RuntimeView>")]
pub struct List;

impl Handler<List> for RuntimeRegistry {
    type Result = MessageResult<List>;
    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let mut out: Vec<RuntimeView> = self
            .entries
            .iter()
            .map(|(id, e)| RuntimeView {
                runtime_id: id.clone(),
                url: e.url.clone(),
                status: if self.is_live(e, now) { "live" } else { "lost" },
                source: e.source,
                version: e.version.clone(),
                max_concurrency: e.max_concurrency,
                active_steps: e.active.len(),
                registered_at: e.registered_at,
                last_seen_at: e.last_seen_at,
            })
            .collect();
        if let Some(url) = &self.fallback {
            if !self.entries.contains_key(CONFIG_ID) {
                let now_ts = Timestamp::now();
                out.push(RuntimeView {
                    runtime_id: CONFIG_ID.into(),
                    url: Some(url.clone()),
                    status: "live",
                    source: Source::Config,
                    version: None,
                    max_concurrency: None,
                    active_steps: 0,
                    registered_at: now_ts,
                    last_seen_at: now_ts,
                });
            }
        }
        out.sort_by(|a, b| a.runtime_id.cmp(&b.runtime_id));
        MessageResult(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn least_loaded_selection_and_fallback() {
        let reg =
            RuntimeRegistry::new(Duration::from_secs(30), Some("http://fallback:5051".into()))
                .start();
        // nothing registered: the configured fallback
        let c = reg.send(Select).await.unwrap().unwrap();
        assert_eq!(c.runtime_id, CONFIG_ID);
        for id in ["rt-a", "rt-b"] {
            reg.send(Register {
                runtime_id: id.into(),
                url: format!("http://{id}:5051"),
                version: None,
                max_concurrency: Some(4),
            })
            .await
            .unwrap();
        }
        reg.send(Active {
            runtime_id: "rt-a".into(),
            key: "r/s1".into(),
            add: true,
        })
        .await
        .unwrap();
        let c = reg.send(Select).await.unwrap().unwrap();
        assert_eq!(c.runtime_id, "rt-b");
        reg.send(Active {
            runtime_id: "rt-b".into(),
            key: "r/s2".into(),
            add: true,
        })
        .await
        .unwrap();
        reg.send(Active {
            runtime_id: "rt-b".into(),
            key: "r/s3".into(),
            add: true,
        })
        .await
        .unwrap();
        assert_eq!(reg.send(Select).await.unwrap().unwrap().runtime_id, "rt-a");
        // draining and cooling runtimes are skipped
        reg.send(Seen {
            runtime_id: "rt-a".into(),
            url: None,
            version: None,
            max_concurrency: None,
            draining: true,
        })
        .await
        .unwrap();
        assert_eq!(reg.send(Select).await.unwrap().unwrap().runtime_id, "rt-b");
        reg.send(CoolDown {
            runtime_id: "rt-b".into(),
            for_: Duration::from_secs(5),
        })
        .await
        .unwrap();
        assert_eq!(
            reg.send(Select).await.unwrap().unwrap().runtime_id,
            CONFIG_ID
        );
        let list = reg.send(List).await.unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(
            list.iter()
                .find(|r| r.runtime_id == "rt-b")
                .unwrap()
                .active_steps,
            2
        );
    }
}
