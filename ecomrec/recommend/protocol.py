"""The field's leave-one-out protocol (RecBole, the SASRec paper), and the order of work it imposes.

Each user's last event is the test target, the second-last the validation target. Models are fitted on
the training events and selected on validation. At **test** time the validation interaction is part of
the user's known history; what "part of the history" means depends on the model:

* **fold-in** — the model keeps every learnt parameter and reads the validation item as the last
  history item (`Recommender.fold_in`): SASRec's input sequence, ItemKNN's and EASE's history row, the
  content model's profile; matrix factorisation cannot use a history without learning a user vector,
  so ALS and BPR are refitted on train + valid with the selected hyper-parameters.
* **training history** — scores from the training matrix, with the validation item only removed from
  the ranking. This is RecBole's rule for its *general* models (ItemKNN, BPR, EASE, popularity), and for
  a sequential model it means predicting two steps ahead.

`recbole_rule` names, per model, the view RecBole reports, so the course's figures compare with its
published ones; the fold-in view is the one a deployed system would use, and the hybrids build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ecomrec import config as C
from ecomrec.recommend.evaluate import target_ranks
from ecomrec.recommend.models import Recommender
from ecomrec.recommend.sasrec import SASRec

VIEWS = ("fold-in", "training history")


def recbole_rule(model: Recommender) -> str:
    """The view RecBole evaluates `model` under: fold-in for sequential models, training history otherwise."""
    return "fold-in" if isinstance(model, SASRec) else "training history"


def fold_in_method(model: Recommender) -> str:
    """How `model`'s fold-in view uses the validation interaction, in words (for the tables)."""
    from ecomrec.recommend.models import ContentBased, ImplicitMF, Popularity, WeightedFusion

    if isinstance(model, SASRec):
        return "last item of the input sequence"
    if isinstance(model, ImplicitMF):
        return "refit on train + valid"
    if isinstance(model, ContentBased):
        return "profile recomputed"
    if isinstance(model, Popularity):
        return "masked only (counts from train)"
    if isinstance(model, WeightedFusion):
        return "each component's fold-in"
    return "history row (parameters kept)"


def training_end(model: Recommender) -> str:
    """What ended `model`'s training, in words (for the tables): for SASRec, early stopping ("patience")
    or the epoch budget, with the kept epoch; otherwise how the model is fitted."""
    from ecomrec.recommend.models import EASE, ImplicitMF, ItemKNN

    if isinstance(model, SASRec) and model.best_epoch is None:
        return f"epoch budget: {len(model.history)} epochs, no validation"
    if isinstance(model, SASRec):
        return f"{model.stopped}: kept epoch {model.best_epoch} of {len(model.history)}"
    if isinstance(model, ImplicitMF):
        return f"{model.params['iterations']} iterations (chosen on valid)"
    if isinstance(model, (ItemKNN, EASE)):
        return "closed form"
    return "counts / embeddings, no training"


@dataclass(frozen=True)
class LeaveOneOut:
    """The three parts of a leave-one-out split and the views of a model they define."""

    train: pd.DataFrame
    valid: pd.DataFrame  # one event per user: the validation interaction
    test: pd.DataFrame  # one event per user: the test interaction

    def __post_init__(self):
        for name in ("valid", "test"):
            part = getattr(self, name)
            if part[C.COL_USER].duplicated().any():
                raise ValueError(f"leave-one-out {name} must hold one event per user")
        if set(self.valid[C.COL_USER]) != set(self.test[C.COL_USER]):
            raise ValueError("valid and test must hold the same users")
        # built once: the notebook asks for them per user in places (frozen: hence object.__setattr__)
        object.__setattr__(self, "_targets", {name: getattr(self, name).set_index(C.COL_USER)[C.COL_ITEM].to_dict()
                                              for name in ("valid", "test")})

    @property
    def users(self) -> list:
        return sorted(self.test[C.COL_USER])

    def targets(self, split: str) -> dict:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
        return self._targets[split]

    def test_view(self, model: Recommender, view: str) -> tuple[Recommender, dict | None]:
        """(model to score with, extra exclusions) for test under `view` (see the module docstring)."""
        if view == "fold-in":
            return model.fold_in(self.valid[[C.COL_USER, C.COL_ITEM]]), None
        if view == "training history":
            return model, {u: [i] for u, i in self.targets("valid").items()}
        raise ValueError(f"view must be one of {VIEWS}, not {view!r}")

    def valid_ranks(self, model: Recommender) -> pd.Series:
        return target_ranks(model, self.users, self.targets("valid"))

    def test_ranks(self, model: Recommender, views=VIEWS, folded: Recommender | None = None) -> dict[str, pd.Series]:
        """Test target ranks of an already selected `model` under each view: call it once per model,
        after every choice has been made on valid. `folded` passes a fold-in view already built (a refit,
        for matrix factorisation, is not repeated)."""
        out = {}
        for view in views:
            scored, exclude = (folded, None) if view == "fold-in" and folded is not None else self.test_view(model, view)
            out[view] = target_ranks(scored, self.users, self.targets("test"), exclude)
        return out


def temporal_next_item(train: pd.DataFrame, later: pd.DataFrame) -> dict:
    """The global temporal protocol as one target per user: each user's first event after the cut
    (`later`, in `order_events` order) whose user has at least one event before it (`train`). Users
    first seen after the cut have no history to rank from and are left out (a cold-user problem)."""
    known = set(train[C.COL_USER])
    first = later[later[C.COL_USER].isin(known)].groupby(C.COL_USER, sort=True).head(1)
    return first.set_index(C.COL_USER)[C.COL_ITEM].to_dict()
