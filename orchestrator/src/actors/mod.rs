//! Thin actors over the pure engine (orchestrator.md §9): the RunManager, one RunActor per
//! non-terminal run, the StepSupervisor and the RuntimeRegistry. They live on one arbiter; HTTP
//! handlers reach them through `Addr`s.

pub mod manager;
pub mod registry;
pub mod run;
pub mod supervisor;
