//! The ktsu orchestrator: durable runs, the workflow DAG, the Air-Lock and approvals (built on `ktsu-shared`).
