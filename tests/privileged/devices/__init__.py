"""Privileged tests of the devices controller, each in its own network namespace."""
