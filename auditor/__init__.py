"""The audit: analyses over the vectors the indexer stored."""
