"""Dashboard preview: draws the dashboards' metrics with matplotlib (development only, never in the layer)."""
