"""The connection portal (issue 16): static pages and ES modules served under /portal,
calling the same JSON API as every other client. See functions/portal/README.md."""
