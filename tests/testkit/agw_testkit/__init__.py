"""agw_testkit: what every end-to-end suite under tests/ shares.

Each suite (tests/e2e, e2e_neuron, e2e_governance, e2e_metrics, e2e_otel,
e2e_schema) puts this directory's parent on its path with `pythonpath =
../testkit` in its pytest.ini and loads the pytest plugin from its conftest
(`pytest_plugins = ["agw_testkit.plugin"]`); the suite's own helpers stay in
its `*_support` package.

Layout:
- `gateway`    a real `agent-gateway serve` process: free port, config file,
               store (SQLite file or a fresh PostgreSQL database), /readyz wait,
               restart, CLI, and the execution-event check when its use ends
- `plugin`     the pytest plugin: refuses to start without binary / store /
               events venv, reports kept logs and event totals, removes work
               dirs after a green run; fixtures `gateway_factory`,
               `module_gateway_factory`, `uniq`
- `responses`  `describe` (a response for assertion messages), `error_code`
- `waits`      `wait_until`, the bounded poll every wait goes through
- `raw`        hand-signed Intent Bus requests (strict-mode HMAC)
- `tasks`      the task API (`/api/v1/tasks`)
- `tenants`    a tenant: its API key and CLI-minted JWTs
- `events`     execution-event reads, tampering, and the independent
               `intentproof` verifier (tests/events)
- `neuron`     a real `holokai_neuron_sdk.Neuron` on its own event-loop thread
               (imports the SDK: only for suites whose venv has it)
"""

from pathlib import Path

#: The repository root (this file is tests/testkit/agw_testkit/__init__.py).
REPO = Path(__file__).resolve().parents[3]
