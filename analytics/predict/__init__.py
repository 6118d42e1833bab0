"""Failure predictors: each turns an entity's recent history into a ``Prediction``
(probability over a horizon, with the evidence that drove it).

- ``disk``: SMART attributes and their trends; a rule prior that works on day one and a gradient
  boosted model trainable on a fleet's own history (``vigil train disk``).
- ``gpu``: correctable-ECC and remapped-row trends, PCIe replays, XID history and thermal margin,
  with a repeat-offender ("lemon") score per GPU serial.
- ``forecast``: time-to-threshold (disk full, thermal limit) with statsmodels exponential smoothing.
"""
