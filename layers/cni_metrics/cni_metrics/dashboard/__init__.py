"""CloudWatch dashboards (and optional alarms) for the clusters the collector monitors.

``body`` builds bodies (pure), ``fleet_page`` fleet mode's overview page (pure), ``validate`` checks them,
``clusters`` tells which clusters to show, ``alarms``/``dashboards`` reconcile them with CloudWatch, ``job``
runs one pass, ``handler`` routes Lambda events.
"""
