"""Storage behind small interfaces: metadata (Table Storage) and secrets (Key Vault)."""
