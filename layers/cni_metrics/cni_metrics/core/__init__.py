"""Pure core: parse aws-node payloads, aggregate them to cluster level. No I/O, no AWS."""
