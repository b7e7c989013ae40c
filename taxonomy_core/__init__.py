"""What the indexer, the auditor and the app share: schema, findings and edits, the store, manifest formats."""
