"""The operator web UI, served under /ui on the API port."""
