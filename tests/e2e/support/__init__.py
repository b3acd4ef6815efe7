"""Helpers of the Intent Bus end-to-end suite (tests/e2e); the gateway, the
hand-signed client and the event helpers are agw_testkit's.

- `sdk`        a thin version switch over the installed `intent-bus` (1.3.2 / 2.1.2)
- `checks`     assertions on Intent Bus responses (error body, standard headers)
- `other_sdk`  one action with the other venv's SDK (a script, run as a subprocess)
"""
