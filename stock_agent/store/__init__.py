"""Everything Redis, behind objects the App owns: the backend (which server, its pooled client),
keys, session history and sessions (the turn's one read and one write), profiles, the
execution cache, the unsaved-turn journal, and status. Never imports the agent, UI or CLI."""
