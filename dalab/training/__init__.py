"""Training: Config and presets, the loop, selection, run folders and protocols."""

from dalab.training.config import PRESETS, PROTOCOLS, Config, make_config
from dalab.training.loop import Result, train
from dalab.training.runfolder import load_run

__all__ = ["Config", "PRESETS", "PROTOCOLS", "Result", "load_run", "make_config",
           "train"]
