"""The scalar robust statistics, kept under their old names for the event-path detectors.

They live in the detector library now: :class:`RobustStat` in ``models/robust.py`` (EWMA level,
EW MAD scale, level-shift re-anchoring) and the post-rule state machine in ``models/decide.py``
(``Hysteresis`` is :class:`~vigil.analytics.models.decide.PostRule`), the scalar twins of the
vectorised bank forms the live ``zscore`` stage runs, so a training job's loss is judged the way
a GPU's temperature is.
"""

from __future__ import annotations

from vigil.analytics.models.decide import PostRule as Hysteresis
from vigil.analytics.models.robust import MAD_TO_SIGMA, RobustStat

__all__ = ["MAD_TO_SIGMA", "Hysteresis", "RobustStat"]
