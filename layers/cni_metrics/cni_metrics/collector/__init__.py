"""The collector: settings, one cluster's collection, the job over many clusters, its outbox and wiring."""
