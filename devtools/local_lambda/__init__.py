"""local_lambda (development tooling, not shipped in the Lambda layer)."""
