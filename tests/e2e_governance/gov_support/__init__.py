"""Helpers of the GOVERNANCE end-to-end suite (tests/e2e_governance); the
gateway, tenants, the task API and the neuron harness are agw_testkit's.

- `config`   the suite's gateway config files: topics, agents, policies
- `tomlgen`  a tiny TOML writer for those configs (checked with tomllib)
- `api`      raw HTTP calls to the governance routes (status codes, headers,
             exact bodies the SDK hides) and condition-based waits
- `sdk`      the installed, unmodified `hestiaos` SDK: sync Client, AsyncClient
             driven through asyncio.run, the `hestiaos` CLI
- `workers`  the workers that answer runs: intent-bus 2.1.2's WorkerRuntime on a
             thread and a hand-driven Intent Bus claim (neurons: agw_testkit.neuron)
"""
