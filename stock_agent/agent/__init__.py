"""The LangChain layer, and the only one: the model, the prompts, the tools (thin adapters over
the services), the per-call context, and one agent for every user with its Redis history."""
