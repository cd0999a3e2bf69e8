"""What the model said about one image, as every caller passes it on.

The predictor, the batch path, the CLI, the Worklist, the PACS results, the charts and the
Diagnose page all carry a ``Prediction``: calibrated probabilities by class (or the reason the
image was refused) and the model version. The label, the class with the highest probability,
is computed here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from model.age_groups import AgeReading


def assessed_only(probabilities: Mapping[str, float], age: AgeReading | None
                  ) -> dict[str, float]:
    """The probabilities given that the class is one the age group's head was trained on: a
    class it never saw (``age.not_assessed``) gets 0 and the others share the mass, as the
    group's block restricted to its trained classes would give them."""
    skipped = age.not_assessed if age is not None else ()
    kept = sum(p for name, p in probabilities.items() if name not in skipped)
    if not skipped or kept <= 0:
        return dict(probabilities)
    return {name: 0.0 if name in skipped else p / kept for name, p in probabilities.items()}


def top_class(probabilities: Mapping[str, float]) -> str:
    """The class with the highest probability; a tie goes to the earlier class (model order)."""
    return max(probabilities, key=probabilities.__getitem__)


@dataclass(frozen=True)
class Prediction:
    """Calibrated probabilities by class name (in the model's order) and their label, or the
    message saying why the image was refused (exactly one of the two)."""

    probabilities: dict[str, float] | None
    model_version: str
    refusal: str | None = None
    label: str | None = field(init=False)
    # The age group the probabilities were read for (model.age_groups); None for a refusal or a
    # model without age heads.
    age: AgeReading | None = None
    # Whether the film looks like those the model was trained or adapted on (model.familiarity);
    # None for a refusal or a run without a feature bank.
    familiar: bool | None = None
    # The site the model was validated at (model.site_validation); None: at no site.
    validated_at_site: str | None = None
    # The film's pooled features, float16, for the batch shift check (model.shift): kept with
    # the analysis, never shown or printed. None for a refusal, or from a model server (its
    # answer carries no features).
    features: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.probabilities is None) == (self.refusal is None):
            raise ValueError("a Prediction holds probabilities or a refusal, not both or neither")
        label = None if self.probabilities is None else top_class(self.probabilities)
        object.__setattr__(self, "label", label)

    @classmethod
    def of(cls, probabilities: Mapping[str, float], model_version: str,
           age: AgeReading | None = None, familiar: bool | None = None,
           validated_at_site: str | None = None, features: np.ndarray | None = None
           ) -> Prediction:
        """The prediction of an accepted image; a class the age group's head was never trained
        on is not assessed (``assessed_only``), so the label never names it."""
        return cls(assessed_only(probabilities, age), model_version, age=age, familiar=familiar,
                   validated_at_site=validated_at_site,
                   features=None if features is None else np.asarray(features, np.float16))

    @classmethod
    def refused(cls, refusal: str, model_version: str) -> Prediction:
        return cls(None, model_version, refusal)

    @property
    def chosen_age_group(self) -> str | None:
        """The age group a person chose for this image, to read it the same way again (a
        header's or an estimated group comes out the same again by itself)."""
        age = self.age
        return age.group if age is not None and age.source == "given" else None

    @property
    def probability(self) -> float | None:
        """The calibrated probability of the label; None when refused."""
        return None if self.probabilities is None else self.probabilities[self.label]

    def json_fields(self) -> dict:
        """The prediction's fields of a ``python -m model.predict`` line (and of the model
        server's answer): the error, or the label, probabilities, model version, the age-group
        keys of a model with age heads, ``validated_at_site`` (model.site_validation) and
        ``familiar`` (experimental) of a run with a feature bank."""
        if self.refusal is not None:
            return {"error": self.refusal}
        fields = {"label": self.label, "probabilities": self.probabilities,
                  "model": self.model_version, "validated_at_site": self.validated_at_site}
        if self.age is not None:
            fields |= {"age_group": self.age.group, "age_group_source": self.age.source}
            if self.age.probability is not None:
                fields["age_group_probability"] = round(self.age.probability, 4)
            if self.age.notes:
                fields["age_group_notes"] = list(self.age.notes)
            if self.age.not_assessed:
                fields["age_group_not_assessed"] = list(self.age.not_assessed)
        if self.familiar is not None:
            fields["familiar"] = self.familiar
        return fields
