"""Two datasets from one, as MAHALO (Li et al., ICML 2023) assembles them: an action set D_a (states, actions,
next states; its rewards are not to be used) and a small reward set D_r (states, next states, rewards; in some
scenarios no actions), for imitation, imitation from observations and offline RL with few reward labels.

`<env>-all-v2` (and `local/<env>-all-v0`) is the union of the env's random, medium, medium-replay and
full-replay sets, in that order; the expert set supplies D_r. `--scenario` decides the rest:

| scenario    | D_r drawn from   | D_r rewards | D_r actions | expert copy appended to D_a |
| il          | expert           | all 1       | kept        | yes                         |
| ilfo        | expert           | all 1       | removed     | no                          |
| rl_expert   | expert           | true        | kept        | yes                         |
| rlfo        | expert           | true        | removed     | no                          |
| rl_sample   | D_a itself       | true        | kept        | (already in D_a)            |

D_r is `reward_set_ratio` of the source's rows (1 %), made of whole trajectories in a seeded random order.
`remove_terminals` acts on D_a only, before the expert copy is appended: every terminal row is dropped and
the row before it ends its trajectory as a timeout, so no D_a row bootstraps from a terminal. rl_sample needs
no expert set, so it applies to any dataset (its rows are D_a).

This module works on Datasets and numpy arrays only; `datasources/__init__.py` loads the parts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from utils.dataset import Dataset, transitions_from_arrays
from utils.errors import UserInputError
from utils.settings import WITHOUT_REWARD_SET_ACTIONS

NEEDS_EXPERT = ("il", "ilfo", "rl_expert", "rlfo")
EXPERT_COPIED = ("il", "rl_expert")
IMITATION_REWARD_RANGE = (0.0, 1.0)  # il and ilfo label every D_r row 1; nothing is labelled lower
ACTION_SET_QUALITIES = ("random", "medium", "medium-replay", "full-replay")  # D4RL's order; medium-expert is left out
EXPERT_QUALITY = "expert"
ALL_QUALITY = "all"
ALL_ENVS = ("halfcheetah", "hopper", "walker2d")


def all_set_name(env: str, version: str = "v2") -> str:
    return f"{env}-{ALL_QUALITY}-{version}"


def all_set_env(name: str, version: str) -> str | None:
    """The env of an <env>-all-<version> name, or None for any other name."""
    env, _, rest = name.lower().partition("-")
    return env if env in ALL_ENVS and rest == f"{ALL_QUALITY}-{version}" else None


def as_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """A Dataset's rows as D4RL-style arrays, every episode end marked (terminal or timeout)."""
    terminals = dataset.terminals > 0
    return {"observations": dataset.observations, "actions": dataset.actions, "rewards": dataset.rewards,
            "terminals": terminals, "timeouts": dataset.episode_ends & ~terminals,
            "next_observations": dataset.next_observations}


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def take(arrays: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in arrays.items()}


def from_arrays(label: str, arrays: dict[str, np.ndarray], like: Dataset, source: str) -> Dataset:
    """A Dataset of these rows, evaluated and scored as `like` is."""
    return transitions_from_arrays(label, **arrays, eval_env_id=like.eval_env_id, eval_env_kwargs=like.eval_env_kwargs,
                                   score=like.score, source=source)


def union(name: str, parts: dict[str, Dataset]) -> Dataset:
    """An all-set without a scenario: its parts as one dataset, true rewards and actions included, evaluated
    as the first part is."""
    arrays = concatenate([as_arrays(part) for part in parts.values()])
    return dataclasses.replace(
        from_arrays(name, arrays, next(iter(parts.values())), ", ".join(part.source for part in parts.values())),
        parts={"action_set": {quality: part.size for quality, part in parts.items()}})


def trajectories(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The row indices of each trajectory, in file order (a trajectory ends at a terminal or a timeout)."""
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    return np.split(np.arange(ends[-1] + 1), ends[:-1] + 1)


def subsample_trajectories(arrays: dict[str, np.ndarray], ratio: float, seed: int) -> tuple[np.ndarray, int]:
    """Rows of whole trajectories, taken in a random order (default_rng(seed)) until they reach int(ratio * N):
    (rows, trajectories taken). A one-row trajectory cut by a timeout has no transition to learn from and is
    passed over."""
    wanted = int(ratio * len(arrays["observations"]))
    chosen, total = [], 0
    pieces = trajectories(arrays)
    for index in np.random.default_rng(seed).permutation(len(pieces)):
        rows = pieces[index]
        if len(rows) == 1 and not arrays["terminals"][rows[0]]:
            continue
        chosen.append(rows)
        total += len(rows)
        if total >= wanted:
            break
    if not chosen:
        raise UserInputError("the reward set would be empty: the data has no trajectory with a transition")
    return np.concatenate(chosen), len(chosen)


def without_terminals(arrays: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """Every terminal row dropped and the row before it (when in the same trajectory) marked as a timeout:
    (arrays, rows dropped)."""
    terminal = np.flatnonzero(arrays["terminals"])
    timeouts = arrays["timeouts"].copy()
    before = terminal - 1
    same_trajectory = before[(before >= 0) & ~(arrays["terminals"] | arrays["timeouts"])[np.maximum(before, 0)]]
    timeouts[same_trajectory] = True
    kept = np.ones(len(timeouts), bool)
    kept[terminal] = False
    return take({**arrays, "timeouts": timeouts}, kept), len(terminal)


def reward_range(scenario: str, rewards: np.ndarray) -> tuple[float, float]:
    """[r_min, r_max]: [0, 1] in imitation, else the range of the reward set's rewards."""
    if scenario in ("il", "ilfo"):
        return IMITATION_REWARD_RANGE
    return float(rewards.min()), float(rewards.max())


def two_datasets(name: str, action_parts: dict[str, Dataset], expert: Dataset | None, scenario: str,
                 reward_set_ratio: float, seed: int, remove_terminals: bool) -> Dataset:
    """D_a (the returned Dataset's rows) and D_r (its `reward_set`) for a scenario; evaluation and the score
    come from the first part, as MAHALO evaluates on the first dataset's env."""
    if scenario in NEEDS_EXPERT and expert is None:
        raise UserInputError(f"--scenario {scenario} draws the reward set from an expert set, which {name} "
                             f"does not have; use an all-set ({all_set_name('hopper')}, "
                             f"local/{all_set_name('hopper', 'v0')}) or --scenario rl_sample")
    union = concatenate([as_arrays(part) for part in action_parts.values()])
    parts = {"action_set": {quality: part.size for quality, part in action_parts.items()}}

    source = union if scenario == "rl_sample" else as_arrays(expert)
    rows, count = subsample_trajectories(source, reward_set_ratio, seed)
    reward_set = take(source, rows)
    parts["reward_set"] = {"drawn_from": "action set" if scenario == "rl_sample" else EXPERT_QUALITY,
                           "source_rows": len(source["observations"]), "rows": len(rows), "trajectories": count}

    action_set = union
    if remove_terminals:
        action_set, dropped = without_terminals(union)
        parts["action_set"]["terminal_rows_removed"] = dropped
        if dropped == len(union["observations"]):
            raise UserInputError(f"--remove_terminals 1 leaves no rows of {name} in the action set (every row is "
                                 "terminal); use --remove_terminals 0")
    if scenario in EXPERT_COPIED:
        action_set = concatenate([action_set, reward_set])  # with its true rewards: only the oracle reads them
        parts["action_set"]["expert_copy"] = len(rows)
    parts["action_set"]["rows"] = len(action_set["observations"])

    if scenario in ("il", "ilfo"):
        reward_set["rewards"] = np.ones_like(reward_set["rewards"])
    if scenario in WITHOUT_REWARD_SET_ACTIONS:
        reward_set["actions"] = reward_set["actions"][:, :0]
    first = next(iter(action_parts.values()))
    label = f"{name}_{scenario}"

    def dataset(arrays: dict[str, np.ndarray], what: str) -> Dataset:
        return from_arrays(label, arrays, first, f"{what} of {name} ({scenario})")

    return dataclasses.replace(dataset(action_set, "action set"), reward_set=dataset(reward_set, "reward set"),
                               reward_range=reward_range(scenario, reward_set["rewards"]), parts=parts)
