"""The todo HTTP API."""
