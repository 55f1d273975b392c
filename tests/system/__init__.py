"""System tests: the running processes together, under faults of their dependencies and load."""
