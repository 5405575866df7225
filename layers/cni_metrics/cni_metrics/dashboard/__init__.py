"""CloudWatch dashboards (and optional alarms) for the clusters the collector monitors.

``body`` builds bodies (pure), ``validate`` checks them, ``alarms``/``dashboards`` reconcile them with
CloudWatch, ``job`` runs one pass, ``handler`` routes Lambda events, ``render`` draws a body locally.
"""
