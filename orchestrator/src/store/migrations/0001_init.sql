-- Migration 1 (orchestrator.md §8.3): the complete schema. Applied once, in its own
-- transaction, and recorded in schema_migrations. Never edit an applied migration; add 0002_….
CREATE TABLE runs (
  id TEXT PRIMARY KEY, root_run_id TEXT NOT NULL, parent_run_id TEXT REFERENCES runs(id),
  parent_step_id TEXT, workflow_name TEXT NOT NULL, status TEXT NOT NULL,
  created_at TEXT NOT NULL, started_at TEXT, updated_at TEXT NOT NULL, completed_at TEXT, deadline_at TEXT,
  timeout_s INTEGER, budget_usd REAL, payload TEXT NOT NULL, output TEXT,
  error TEXT, error_code TEXT, failed_step TEXT, cancel_reason TEXT,
  totals TEXT NOT NULL, version INTEGER NOT NULL, next_seq INTEGER NOT NULL);
CREATE INDEX runs_created ON runs(created_at DESC, id DESC);
CREATE INDEX runs_workflow ON runs(workflow_name, created_at DESC, id DESC);
CREATE INDEX runs_status ON runs(status, created_at DESC, id DESC);
CREATE INDEX runs_parent ON runs(parent_run_id);
CREATE INDEX runs_root ON runs(root_run_id);
CREATE TABLE steps (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, id TEXT NOT NULL, position INTEGER NOT NULL,
  type TEXT NOT NULL, depends_on TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
  started_at TEXT, ended_at TEXT, updated_at TEXT NOT NULL, deadline_at TEXT, timeout_remaining_ms INTEGER,
  output TEXT, skip_reason TEXT, skip_message TEXT, error TEXT, error_code TEXT, raw_output TEXT, airlock TEXT,
  flags TEXT, rationale TEXT, metrics TEXT NOT NULL, reflected INTEGER, runtime_id TEXT, child_run_id TEXT,
  checkpoint TEXT, PRIMARY KEY (run_id, id));
CREATE TABLE step_items (
  run_id TEXT NOT NULL, step_id TEXT NOT NULL, idx INTEGER NOT NULL, item TEXT NOT NULL,
  status TEXT NOT NULL, attempt INTEGER NOT NULL, started_at TEXT, ended_at TEXT, updated_at TEXT NOT NULL,
  output TEXT, skip_reason TEXT, skip_message TEXT, error TEXT, error_code TEXT, raw_output TEXT, airlock TEXT,
  flags TEXT, rationale TEXT, metrics TEXT NOT NULL, reflected INTEGER, runtime_id TEXT, checkpoint TEXT,
  PRIMARY KEY (run_id, step_id, idx), FOREIGN KEY (run_id, step_id) REFERENCES steps(run_id, id) ON DELETE CASCADE);
CREATE TABLE approvals (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, step_id TEXT NOT NULL, tool_use_id TEXT NOT NULL,
  tool_name TEXT NOT NULL, arguments TEXT, on_reject TEXT NOT NULL, timeout_ms INTEGER NOT NULL,
  timeout_behavior TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT,
  decided_at TEXT, decided_by TEXT, comment TEXT, partial_metrics TEXT NOT NULL,
  PRIMARY KEY (run_id, step_id, tool_use_id));
CREATE INDEX approvals_status ON approvals(status, created_at);
CREATE TABLE events (
  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL, ts TEXT NOT NULL,
  event TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE idempotency_keys (
  key TEXT PRIMARY KEY, workflow_name TEXT NOT NULL, request_hash TEXT NOT NULL,
  run_id TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE INDEX idempotency_expiry ON idempotency_keys(expires_at);
CREATE TABLE lease (id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, host TEXT NOT NULL,
  pid INTEGER NOT NULL, acquired_at TEXT NOT NULL, renewed_at TEXT NOT NULL);
