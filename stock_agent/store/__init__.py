"""Everything Redis: connection (pool, embedded Valkey), keys, session history, profiles, cache."""
