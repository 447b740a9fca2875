"""The HTTP layer: routes stay thin (authorize, call a service, map the result)."""
