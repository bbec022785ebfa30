"""The simulator: a seeded world of models and questions (`presets`), its task (`task`), the
latent model of answers (`latent`), an `LLMClient` that answers in text (`client`), and the
ground truth of a graph's accuracy (`truth`)."""

from .client import SimulatedPool
from .latent import vote_codes
from .presets import PRESETS, SimModel, SimPreset, get_preset, preset_pool
from .task import SPLITS, SimTask, extract_final_answer, make_question, make_task
from .truth import GroundTruth

__all__ = ["GroundTruth", "PRESETS", "SPLITS", "SimModel", "SimPreset", "SimTask",
           "SimulatedPool", "extract_final_answer", "get_preset", "make_question", "make_task",
           "preset_pool", "vote_codes"]
