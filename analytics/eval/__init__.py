"""Offline evaluation of the detector library on public labelled benchmarks (``vigil eval ...``)."""
