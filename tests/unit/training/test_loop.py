"""The loop's non-finite check names what diverged and where."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.training.loop import stop_if_not_finite


def test_the_non_finite_check_names_what_diverged_and_where():
    stop_if_not_finite({"step": 10, "train_loss": 0.5, "val_loss": 0.4}, 11, True)  # all fine
    with pytest.raises(ZooError, match="^val_loss became non-finite at step 10: "):
        stop_if_not_finite({"step": 10, "train_loss": 0.5, "val_loss": np.inf}, 11, True)
    with pytest.raises(ZooError, match="^the parameters became non-finite at step 10: "):
        stop_if_not_finite({"step": 10, "train_loss": 0.5}, 11, False)
    with pytest.raises(ZooError, match="^train_loss became non-finite at step 7: .*optim.lr"):
        stop_if_not_finite({"step": 10, "train_loss": np.nan, "val_loss": np.nan}, 7, False)
