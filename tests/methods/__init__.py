"""Per-method tests: one folder per method, mirroring ``lightning_nas/methods/``."""
