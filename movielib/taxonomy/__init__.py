"""Scene label sets and prompt templates (taxonomy curation tools come later)."""
