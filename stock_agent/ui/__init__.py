"""Terminal presentation: the chat loop and renderers (tables, Markdown, JSON)."""
