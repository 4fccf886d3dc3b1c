"""From stored answers to tallies, scores, leaderboards, progress, exports and plots."""
