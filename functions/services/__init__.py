"""What the gateway does, without HTTP types: each service takes a Principal and plain
data, enforces the rules, and talks to the stores."""
