"""Unit tests of the devices controller: selection rules, options, state, batching."""
