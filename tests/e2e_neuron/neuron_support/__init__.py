"""Helpers of the NEURON end-to-end suite (tests/e2e_neuron).

- `env`      the Intent Bus suite's gateway machinery, tenants, tokens (CLI-minted JWTs)
- `harness`  a real `holokai_neuron_sdk.Neuron` on its own event-loop thread
- `tasks`    the gateway's task API (`/api/v1/tasks`) and condition-based waits
- `jwt`      decoding / re-signing HS256 tokens for the expired / forged cases
- `raw_sse`  a byte-level SSE reader that validates frames with the SDK's own models
- `neuron_proc` a neuron in a child process (for kill -9)
"""
