"""AI-written analysis of a result, under one cluster-wide OpenAI budget."""
