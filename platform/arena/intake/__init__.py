"""Taking a submission in: safe unpacking, metadata, dedup, dry run."""
