"""The one form every dataset takes: flat numpy transitions in file order, plus what evaluation needs.

`transitions_from_arrays` is the one place that decides episode boundaries, next observations, next
actions and which rows have a SARSA target; every source (D4RL, HDF5 files, Minari, generated sets) ends
in it. Nothing here imports torch: the buffer moves the arrays to the training device.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
from gymnasium.envs.registration import EnvSpec

from utils.errors import UserInputError

# Converted datasets hold actions like 1.0000001: a bound of 1 rounded to float32 (its spacing at 1 is 1.2e-7)
# or through a rescaling. Up to this far outside [-1, 1] an action is such a rounding and is clipped; beyond it,
# the actions were never scaled to [-1, 1] and are refused.
ACTION_ROUNDING_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ScoreReference:
    """Normalised score = 100 * (return - min_score) / (max_score - min_score)."""

    min_score: float
    max_score: float
    source: str

    def __post_init__(self):
        if not self.max_score > self.min_score:
            raise UserInputError(
                f"reference scores need max > min, got min {self.min_score} and max {self.max_score}"
            )

    def normalise(self, returns):
        """Normalised score of a return (float in, float out) or of an array of returns."""
        scores = 100.0 * (np.asarray(returns, dtype=np.float64) - self.min_score) / (self.max_score - self.min_score)
        return float(scores) if np.ndim(returns) == 0 else scores


@dataclass
class Dataset:
    """Transitions in file order, float32, plus what evaluation needs to know about their task."""

    name: str
    observations: np.ndarray  # (N, obs_dim)
    actions: np.ndarray  # (N, act_dim)
    rewards: np.ndarray  # (N,)
    terminals: np.ndarray  # (N,) 1.0 where the episode truly ends; timeouts stay 0
    next_observations: np.ndarray  # (N, obs_dim)
    next_actions: np.ndarray  # (N, act_dim) action at next_observations in the same episode
    has_td_target: np.ndarray  # (N,) bool: row is terminal, or row i+1 continues its episode
    eval_env_id: str | EnvSpec  # what gymnasium.make_vec gets
    eval_env_kwargs: dict
    score: ScoreReference | None  # None: only raw returns can be reported
    source: str
    # Learning from two datasets (datasources/scenarios.py): this one holds the actions, `reward_set` the
    # rewards. In scenarios without the reward set's actions, its `actions` have no columns: (N, 0).
    reward_set: Dataset | None = None
    reward_range: tuple[float, float] | None = None  # [r_min, r_max] the reward model is clipped to
    parts: dict = field(default_factory=dict)  # rows of each part, as assembled (recorded in config.json)

    @property
    def size(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def episode_ends(self) -> np.ndarray:
        """(N,) bool, True on the last row of each episode."""
        return (self.terminals > 0) | ~self.has_td_target

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.sum())


def transitions_from_arrays(
    name: str,
    observations,
    actions,
    rewards,
    terminals,
    timeouts=None,
    next_observations=None,
    *,
    eval_env_id: str | EnvSpec,
    eval_env_kwargs: dict | None = None,
    score: ScoreReference | None = None,
    source: str,
) -> Dataset:
    """Build a Dataset from flat D4RL-style arrays in file order.

    A row ends its episode when it is terminal, timed out, or the last row. Only terminals cut the
    bootstrap. A row whose episode goes on gets the next row's action (and observation, if the file
    has none); a row that ends without a terminal has no next action, so it has no SARSA target and is
    kept for imitation only. Where the next step is unknown or never used (terminal rows, rows without
    a target) the row's own observation/action fill in, so every value stays finite. This replaces
    D4RL's qlearning_dataset, which drops the last step of timed-out episodes instead.
    """
    observations = _float_matrix(observations, "observations", source)
    actions = _float_matrix(actions, "actions", source)
    size = len(observations)
    rewards = _float_vector(rewards, "rewards", size, source)
    terminals = _float_vector(terminals, "terminals", size, source) != 0
    timeouts = np.zeros(size, bool) if timeouts is None else _float_vector(timeouts, "timeouts", size, source) != 0
    _check_rows(actions, "actions", size, source)

    _check_finite({"observations": observations, "actions": actions, "rewards": rewards}, source)
    actions = _actions_in_unit_box(actions, source)

    episode_ends = terminals | timeouts
    episode_ends[-1] = True
    continues = np.flatnonzero(~episode_ends)  # rows whose next row is in the same episode
    next_actions = actions.copy()
    next_actions[continues] = actions[continues + 1]
    if next_observations is None:
        next_observations = observations.copy()
        next_observations[continues] = observations[continues + 1]
    else:
        next_observations = _float_matrix(next_observations, "next_observations", source)
        _check_rows(next_observations, "next_observations", size, source)
        if next_observations.shape != observations.shape:
            raise UserInputError(
                f"{source}: next_observations have shape {next_observations.shape}, observations {observations.shape}"
            )

    return Dataset(
        name=name,
        observations=observations,
        actions=actions,
        rewards=rewards,
        terminals=terminals.astype(np.float32),
        next_observations=next_observations,
        next_actions=next_actions,
        has_td_target=terminals | ~episode_ends,
        eval_env_id=eval_env_id,
        eval_env_kwargs=dict(eval_env_kwargs or {}),
        score=score,
        source=source,
    )


def _check_finite(arrays: dict[str, np.ndarray], source: str) -> None:
    """Refuses NaN or inf in the arrays training reads, saying how many and where the first one is."""
    for key, array in arrays.items():
        bad_rows = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
        if len(bad_rows):
            raise UserInputError(
                f"{source}: {key} has NaN or inf in {len(bad_rows)} row(s), the first at row {bad_rows[0]}; "
                "clean the file (drop or repair those rows) before training"
            )


def _actions_in_unit_box(actions: np.ndarray, source: str) -> np.ndarray:
    """Policies act in [-1, 1] (tanh outputs, clipped samples): actions outside it cannot be imitated. Those a
    rounding away from it are clipped, with a note; the rest are refused."""
    magnitudes = np.abs(actions).max(axis=1, initial=0.0)  # initial: no action columns, no error
    outside = np.flatnonzero(magnitudes > 1.0 + ACTION_ROUNDING_TOLERANCE)
    if len(outside):
        # str of a float32 is the shortest text that reads back as it: 1.0001, not a rounded 1 or 1.00010002.
        raise UserInputError(
            f"{source}: {len(outside)} action row(s) lie outside [-1, 1] (the first at row {outside[0]}, "
            f"largest magnitude {magnitudes.max()!s}); rescale the actions to [-1, 1]"
        )
    rounded = np.count_nonzero(magnitudes > 1.0)
    if not rounded:
        return actions
    print(f"note: {source}: {rounded} action row(s) lay within {ACTION_ROUNDING_TOLERANCE:g} of [-1, 1] and were "
          "clipped to it", file=sys.stderr)
    return np.clip(actions, -1.0, 1.0)  # a copy: the caller's array may be this very one


def _float_matrix(values, key: str, source: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.ndim != 2 or len(array) == 0:
        raise UserInputError(f"{source}: {key} must have shape (rows, features) with rows > 0, got {array.shape}")
    return array


def _float_vector(values, key: str, size: int, source: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    _check_rows(array, key, size, source)
    return array


def _check_rows(array: np.ndarray, key: str, size: int, source: str) -> None:
    if problem := row_count_problem(key, len(array), size):
        raise UserInputError(f"{source}: {problem}")


def row_count_problem(key: str, rows: int, size: int) -> str | None:
    """Every array has one row per transition, as many as the observations."""
    return f"{key} has {rows} rows but observations have {size}" if rows != size else None


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def user_score_reference(ref_min_score: float | None, ref_max_score: float | None) -> ScoreReference | None:
    if ref_min_score is None and ref_max_score is None:
        return None
    if ref_min_score is None or ref_max_score is None:
        raise UserInputError("give both --ref_min_score and --ref_max_score, or neither")
    return ScoreReference(float(ref_min_score), float(ref_max_score), "user")
