"""Secret stores: Azure Key Vault, a development-only local store, and an in-process cache."""

from functions.stores.secrets.base import SecretStore, SecretValue

__all__ = ["SecretStore", "SecretValue"]
