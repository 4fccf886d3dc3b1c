"""What organizers decide: teams and their tokens, the tournament's settings."""
