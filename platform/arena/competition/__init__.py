"""The competition around the engine: rounds with their windows and quotas, the entries
that take part in each, and which entry counts for a team."""
