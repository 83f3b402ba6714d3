"""Offline stand-ins for hub artefacts, for tests and the CPU demo (no network, seconds to build)."""
