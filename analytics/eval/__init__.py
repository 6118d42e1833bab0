"""Offline evaluation of the detector library on public benchmarks (DESIGN §9)."""
