"""The learned layer of the red-flag detector: sentence embeddings and a classifier trained on clinic/corpus/.

    model = LearnedModel.load(settings)          # checks the artefact's sha256 against clinic/red_flags.toml
    prediction = model.predict("feels like breathing through a straw", gated=[])
    prediction.p_any, prediction.p_emergency, prediction.criterion, prediction.neighbours

The rules stay the first word (`followup.redflags.screen` combines the two); this layer only adds.
"""

from followup.redflags.learned.artefact import ArtefactError
from followup.redflags.learned.config import LearnedSettings
from followup.redflags.learned.model import LearnedModel, Neighbour, Prediction

__all__ = ["ArtefactError", "LearnedModel", "LearnedSettings", "Neighbour", "Prediction"]
