"""Host and hardware collectors: CPU, memory, disks, filesystems and NICs (psutil), disk SMART
(``smartctl -j``), BMC sensors (``ipmitool sdr``) and InfiniBand port counters (sysfs).

Interface: each module's ``create(options, context)`` returns a collector whose ``collect()``
yields ``(series_key, value)`` samples named from :mod:`vigil.catalog`, and a ``Problem`` for
whatever it could not read.
"""
