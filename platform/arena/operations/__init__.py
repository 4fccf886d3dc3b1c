"""Operating an installation: consistent snapshots of everything it holds (``backup``), and
bringing one back into an empty installation (``restore``)."""
