"""Helpers of the GOVERNANCE end-to-end suite (tests/e2e_governance).

- `env`      the Intent Bus suite's gateway machinery and the neuron suite's
             tenants / tokens / task API, re-exported; the suite's policy configs
- `tomlgen`  a tiny TOML writer for those configs (checked with tomllib)
- `api`      raw HTTP calls to the governance routes (status codes, headers,
             exact bodies the SDK hides) and condition-based waits
- `sdk`      the installed, unmodified `hestiaos` SDK: sync Client, AsyncClient
             driven through asyncio.run, the `hestiaos` CLI
- `workers`  the workers that answer runs: intent-bus 2.1.2's WorkerRuntime on a
             thread, a hand-driven Intent Bus claim, and real neurons
"""
