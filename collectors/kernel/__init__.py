"""The kernel log follower: NVIDIA driver XIDs, NVSwitch SXids, "fallen off the bus", machine
checks, PCIe AER, NCCL and peermem errors, read from ``/dev/kmsg``, ``journalctl -k`` or a log file,
each turned into a :class:`vigil.events.LogEvent`.

Interface: the collector built by :func:`vigil.collectors.kernel.follower.create` (registry name
``kernel_log``); it resumes after a restart from a position committed under its state directory.
"""
