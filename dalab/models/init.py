"""``--init-weights``: kept as an import path for ``dalab.training.loop``; the loader is
:func:`dalab.models.pretrained.load_init_weights`."""

from dalab.models.pretrained import load_init_weights

__all__ = ["load_init_weights"]
