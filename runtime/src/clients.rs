//! The outbound HTTP clients legs use (awc clients are per thread):
//!
//! - `internal`: gateway and orchestrator calls — `User-Agent: ktsu/<version>` and the internal
//!   token when set.
//! - `mcp`: tool servers — `User-Agent: ktsu-runtime/<version>` and never the internal token.
//!
//! Each leg arbiter builds its pair once ([`Clients::install`]) and every leg on it shares them:
//! building a client is not free (with TLS enabled it loads a root store), and shared pools keep
//! connections to the gateway alive between legs. The pools have no connection limit: each
//! leg has at most one request in flight per client (plus one stream per legacy MCP session),
//! so the limit that matters is `KTSU_RUNTIME_MAX_CONCURRENCY`. Every request sets its own
//! total timeout; the client-wide one is only a backstop.

use crate::settings::Settings;
use ktsu_shared::http::{ClientSettings, InvalidHeader};
use std::cell::OnceCell;
use std::rc::Rc;

pub struct Clients {
    pub internal: awc::Client,
    pub mcp: awc::Client,
}

thread_local! {
    static ARBITER_CLIENTS: OnceCell<Rc<Clients>> = const { OnceCell::new() };
}

impl Clients {
    pub fn new(settings: &Settings) -> Result<Clients, InvalidHeader> {
        let backstop = settings.step_timeout;
        Ok(Clients {
            internal: ClientSettings::new(backstop)
                .bearer_token(settings.internal_token.clone())
                .connection_limit(0)
                .build()?,
            mcp: ClientSettings::new(backstop)
                .user_agent(format!("ktsu-runtime/{}", ktsu_shared::VERSION))
                .connection_limit(0)
                .build()?,
        })
    }

    /// Builds this thread's clients (call once, on a leg arbiter).
    pub fn install(settings: &Settings) -> Result<(), InvalidHeader> {
        let clients = Rc::new(Clients::new(settings)?);
        ARBITER_CLIENTS.with(|cell| {
            let _ = cell.set(clients);
        });
        Ok(())
    }

    /// This thread's clients; fresh ones on a thread without (a leg started elsewhere because
    /// its arbiter was gone).
    pub fn for_this_thread(settings: &Settings) -> Result<Rc<Clients>, InvalidHeader> {
        match ARBITER_CLIENTS.with(|cell| cell.get().cloned()) {
            Some(clients) => Ok(clients),
            None => Clients::new(settings).map(Rc::new),
        }
    }
}
