//! Pieces every ktsu service runs the same way (cli-and-ops.md §2–§4): settings parsing with
//! errors that name the setting, the lifecycle behind `/health` and draining, the internal
//! bearer token, the access log, and systemd readiness and watchdog notifications.

pub mod access_log;
pub mod auth;
pub mod lifecycle;
pub mod notify;
pub mod settings;
