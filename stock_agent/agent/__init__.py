"""The LangChain agent: tools, model, and the agent wrapped with its Redis-backed history."""
