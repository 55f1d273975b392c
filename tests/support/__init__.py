"""Helpers shared by the tests, by what they give:

- `servers`: real processes (`todo-api`, workers, schedulers), users, HTTP clients, direct
  database reads, metrics scrapes;
- `databases`: throwaway migrated databases and a pool of `todo-api` servers reused across tests;
  the rule that a missing service fails under CI=true;
- `instances`: throwaway Redis and PostgreSQL servers for fault tests, and a round-trip counter;
- `load`: steady client load with every outcome kept;
- `stack`: an API with workers and schedulers on one database and key prefix.
"""
