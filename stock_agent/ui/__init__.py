"""Terminal front ends over `App`: the chat loop, the analyze report, doctor, and the renderers
(tables, Markdown, JSON, plain text)."""
