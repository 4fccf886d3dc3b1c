"""Running submitted code: the locked-down container, its staging, attack and defense runs."""
