"""Fleet mode: many clusters in many accounts and regions, one collector invocation per small group.

- ``document``: the fleet document (an S3 object): entries and discovery rules, validated per entry with
  the collector's own validators; read with a size bound and cached (TTL, conditional re-reads).
- ``resolve``: entries + discovery rules -> the fleet's clusters (AssumeRole per account, regions in
  parallel, bounded by a ``Deadline``); ``lookup`` / ``resolve_name`` for a worker given a name.
- ``dispatch``: plan the invocations (inline, or one per cluster / small group) and invoke the collector
  asynchronously (``InvocationType=Event``), a bounded number at a time.
- ``health``: the state objects' last writes (one ListObjectsV2 per 1,000 clusters) and the dispatch
  report -> the fleet's health datums.
"""
