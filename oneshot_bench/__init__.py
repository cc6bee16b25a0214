"""Shared plumbing of oneshot-bench: registries, typed configuration, data, devices, atomic I/O."""

__version__ = "0.1.0"
