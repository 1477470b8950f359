//! SIGTERM/SIGINT handling for the commands that run services (cli-and-ops.md §1.2, §3.4): the
//! first signal starts a graceful shutdown; a second one exits at once with 130 (SIGINT) or
//! 143 (SIGTERM).

use actix_rt::signal::unix::{signal, Signal as UnixSignal, SignalKind};
use std::future::{poll_fn, Future};
use std::task::Poll;

/// A shutdown signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The exit code of a process interrupted by this signal.
    pub fn exit_code(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// Waits for SIGINT or SIGTERM. Once one has arrived, a second exits the process at once.
/// If the handlers cannot be installed (no signal support), this never resolves and the
/// process is stopped by the default action instead.
pub async fn first() -> Signal {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        log::warn!(target: "ktsu", event = "ktsu.signals_unavailable"; "cannot install signal handlers; SIGTERM/SIGINT stop the process without draining");
        return std::future::pending().await;
    };
    let got = select_signal(&mut interrupt, &mut terminate).await;
    actix_rt::spawn(async move {
        let second = select_signal(&mut interrupt, &mut terminate).await;
        log::warn!(target: "ktsu", event = "ktsu.stopped", exit_code = second.exit_code(), signal = second.name(); "second signal: exiting at once");
        ktsu_shared::logging::flush();
        std::process::exit(i32::from(second.exit_code()));
    });
    got
}

/// Runs `stop` after the first SIGINT/SIGTERM, logging `ktsu.stopping`. The returned handle is
/// aborted when the service ends on its own.
pub fn on_shutdown<F, Fut>(stop: F) -> actix_rt::task::JoinHandle<()>
where
    F: FnOnce() -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    actix_rt::spawn(async move {
        let signal = first().await;
        log::info!(target: "ktsu", event = "ktsu.stopping", signal = signal.name(); "stopping");
        stop().await;
    })
}

/// The first of two signal streams to fire.
async fn select_signal(interrupt: &mut UnixSignal, terminate: &mut UnixSignal) -> Signal {
    poll_fn(|cx| {
        if interrupt.poll_recv(cx).is_ready() {
            return Poll::Ready(Signal::Interrupt);
        }
        if terminate.poll_recv(cx).is_ready() {
            return Poll::Ready(Signal::Terminate);
        }
        Poll::Pending
    })
    .await
}
