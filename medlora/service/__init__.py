"""The clinic bot: LLMService, adapters registry, routing and retrieval."""
