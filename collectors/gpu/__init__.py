"""GPU sources: NVML (``nvml``), a dcgm-exporter scrape (``dcgm``) and ``nvidia-smi`` (``nvidia_smi``).

Each module exposes ``create(options, context) -> Collector`` (the ``Collector`` protocol of
:mod:`vigil.collectors.base`); all three publish the same metric names (:mod:`vigil.catalog`, base
units) with the labels ``gpu_index`` (+ ``mig_instance`` for MIG slices), and the GPU's identity once
per GPU on the ``gpu_info`` series. The NVML collector reads through the :class:`NvmlReader`
protocol, so a recording (tests) or the fleet simulator (``sim_gpu``) can stand in for the driver.
"""
