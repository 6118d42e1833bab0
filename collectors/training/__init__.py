"""The training SDK: a training script reports each step; Vigil publishes it as a ``TrainingStep``.

The interface is :class:`Reporter` (``report()`` once per step, or ``step()`` in a plain PyTorch
loop); it never blocks the step: a bounded queue and a background publisher stand between the two.
Ready hooks, importable without their frameworks installed: :class:`~.huggingface.VigilCallback`
(a Hugging Face ``TrainerCallback``) and :class:`~.lightning.VigilLightningCallback` (a Lightning
``Callback``). For jobs that already expose Prometheus metrics, the ``training_scrape`` collector
(:mod:`.scrape`) reads them instead.
"""

from vigil.collectors.training.identity import Identity
from vigil.collectors.training.reporter import Reporter, ReporterOptions

__all__ = ["Identity", "Reporter", "ReporterOptions"]
