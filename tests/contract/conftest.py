"""The contract tests call the service the same ways the integration tests do: through each Lambda handler and
through the composed local app (the ``api`` fixture)."""

from tests.integration.conftest import api

__all__ = ["api"]
