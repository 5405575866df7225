"""fake_eks (development tooling, not shipped in the Lambda layer)."""
