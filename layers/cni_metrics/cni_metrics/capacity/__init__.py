"""Capacity planning: subnet headroom, per-zone gauges, nodes nearest exhaustion, time to exhaustion.

``core`` is pure (no I/O, no clock); ``sources`` reads nodes, ENIConfigs and subnets.
"""
