"""Helpers of the NEURON end-to-end suite (tests/e2e_neuron); the gateway, the
neuron harness, tenants and the task API are agw_testkit's.

- `jwt`          decoding / re-signing HS256 tokens for the expired / forged cases
- `raw_sse`      a byte-level SSE reader that validates frames with the SDK's own models
- `neuron_proc`  a neuron in a child process (for kill -9; a script, run as a subprocess)
"""

#: Lease TTL of the suite's `ttl_gw` gateway (heartbeat / expiry / kill tests).
SHORT_TTL_MS = 3000
