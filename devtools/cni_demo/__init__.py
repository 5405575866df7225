"""cni_demo (development tooling, not shipped in the Lambda layer)."""
