"""Operating the sync: poison replay, status, explain, and the command line."""
