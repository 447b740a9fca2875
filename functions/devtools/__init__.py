"""Development helpers: starting Azurite, creating local settings. Used by `make run`
and by the test suite, never in Azure."""
