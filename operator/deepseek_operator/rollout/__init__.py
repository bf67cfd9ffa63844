"""The pure rollout state machine and analysis decisions. No I/O."""
