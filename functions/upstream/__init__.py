"""Calls to upstream APIs: URL building that cannot escape the base, header rules,
credential injection (httpx.Auth classes) and the shared httpx client."""
