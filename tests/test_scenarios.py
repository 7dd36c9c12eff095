"""Two datasets from one (datasources/scenarios.py) through load_dataset, on small D4RL-format files written here.

Every row's first observation is a unique row id (file k holds ids 100 * (k + 1) + row), so the tests can say
which source rows went into the action set D_a, into the reward set D_r and into the expert copy.
"""

import json
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

from datasources import load_dataset
from datasources.d4rl import d4rl_file_name
from test_agent_contract import tiny_settings  # the small settings every agent is checked with
from test_datasources import write_hdf5  # the D4RL-format writer the datasource tests use
from utils.buffer import STD_FLOOR, Buffer
from utils.d4rl_tasks import LOCAL_SCORE_SOURCE
from utils.errors import UserInputError

OBS_DIM, ACT_DIM = 11, 3
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: a download fails at once instead of reaching the internet
SCENARIOS = ("il", "ilfo", "rl_expert", "rlfo", "rl_sample")
ACTION_QUALITIES = ("random", "medium", "medium-replay", "full-replay")
QUALITIES = ACTION_QUALITIES + ("expert",)

# Each file's trajectories as (length, end): "T" a terminal, "t" a timeout, "" the file's tail, which ends with
# neither. Some files start with a one-row terminal trajectory, end in a terminal, hold one-row timeouts.
LAYOUT = {
    "random": [(1, "T"), (3, "T"), (4, "t"), (2, "T"), (5, "")],
    "medium": [(6, "t"), (1, "t"), (4, "T"), (5, "t")],
    "medium-replay": [(2, "T"), (7, "t"), (3, "T")],
    "full-replay": [(4, "T"), (1, "T"), (6, "")],
    "expert": [(5, "T"), (4, "t"), (1, "t"), (6, "T"), (3, "t"), (1, "t"), (5, "T"), (4, "T"), (2, "t"), (1, "T"),
               (6, "")],
}
SIZES = {quality: sum(length for length, _ in layout) for quality, layout in LAYOUT.items()}
ACTION_SET_ROWS = sum(SIZES[q] for q in ACTION_QUALITIES)
TERMINAL_ROWS = sum(end == "T" for q in ACTION_QUALITIES for _, end in LAYOUT[q])  # in the action set's files


def file_arrays(quality: str) -> dict[str, np.ndarray]:
    k = QUALITIES.index(quality)
    size = SIZES[quality]
    ids = 100 * (k + 1) + np.arange(size)
    ends = np.cumsum([length for length, _ in LAYOUT[quality]]) - 1
    terminals, timeouts = np.zeros(size, bool), np.zeros(size, bool)
    for row, (_, end) in zip(ends, LAYOUT[quality]):
        terminals[row], timeouts[row] = end == "T", end == "t"
    observations = ids[:, None] + np.arange(OBS_DIM) / 10 * np.arange(1, size + 1)[:, None] / size
    actions = np.stack([np.arange(size) / 100, np.full(size, (k + 1) / 10), np.linspace(-1, 1, size)], axis=1)
    return {"observations": observations.astype(np.float32), "actions": actions.astype(np.float32),
            "rewards": (ids / 100).astype(np.float32), "terminals": terminals, "timeouts": timeouts}


def trajectories(quality: str) -> list[tuple[np.ndarray, str]]:
    """(row ids, end) of each trajectory in file order; the tail ends as a timeout does."""
    ids = file_arrays(quality)["observations"][:, 0].astype(int)
    bounds = np.cumsum([0] + [length for length, _ in LAYOUT[quality]])
    return [(ids[a:b], end or "t") for a, b, (_, end) in zip(bounds[:-1], bounds[1:], LAYOUT[quality])]


def union_trajectories() -> list[tuple[np.ndarray, str]]:
    return [t for quality in ACTION_QUALITIES for t in trajectories(quality)]


ONE_ROW_TIMEOUT_IDS = {int(ids[0]) for q in QUALITIES for ids, end in trajectories(q) if len(ids) == 1 and end == "t"}


def write_d4rl_files(folder, qualities=QUALITIES):
    folder.mkdir(parents=True, exist_ok=True)
    for quality in qualities:
        write_hdf5(folder / d4rl_file_name(f"hopper-{quality}-v2"), **file_arrays(quality))
    return folder


def write_local_files(data_dir, qualities=QUALITIES):
    for quality in qualities:
        path = data_dir / "local" / f"hopper-{quality}-v0.hdf5"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_hdf5(path, **file_arrays(quality))
        with h5py.File(path, "a") as file:
            file.attrs["env_id"] = "Hopper-v4"
    return data_dir


@pytest.fixture(scope="module")
def d4rl_cache(tmp_path_factory):
    return write_d4rl_files(tmp_path_factory.mktemp("d4rl"))


@pytest.fixture(scope="module")
def cache_without_expert(tmp_path_factory):
    return write_d4rl_files(tmp_path_factory.mktemp("d4rl_no_expert"), ACTION_QUALITIES)


def load(folder, scenario, **kwargs):
    return load_dataset("hopper-all-v2", d4rl_dir=folder, dataset_url=UNREACHABLE, scenario=scenario, **kwargs)


def row_ids(dataset) -> np.ndarray:
    return np.rint(dataset.observations[:, 0]).astype(int)


def expert_rows(ids: np.ndarray, key: str) -> np.ndarray:
    """The expert file's `key` values of the rows with these ids."""
    return file_arrays("expert")[key][ids - 100 * (QUALITIES.index("expert") + 1)]


def split_into_source_trajectories(dataset, source: list[tuple[np.ndarray, str]]) -> list[int]:
    """Indices (into `source`) of the whole source trajectories that make up `dataset`, in its order; fails
    unless every piece is one complete trajectory, ending where the dataset ends an episode, with its end kept."""
    by_first = {int(ids[0]): index for index, (ids, _) in enumerate(source)}
    ids, found, row = row_ids(dataset), [], 0
    while row < len(ids):
        assert int(ids[row]) in by_first, f"row {row} (id {ids[row]}) does not start a source trajectory"
        index = by_first[int(ids[row])]
        trajectory, end = source[index]
        piece = slice(row, row + len(trajectory))
        np.testing.assert_array_equal(ids[piece], trajectory)
        assert dataset.episode_ends[piece].tolist() == [False] * (len(trajectory) - 1) + [True]
        assert dataset.terminals[piece].tolist() == [0] * (len(trajectory) - 1) + [float(end == "T")]
        found.append(index)
        row += len(trajectory)
    return found


def expected_choice(source: list[tuple[np.ndarray, str]], ratio: float, seed: int) -> list[int]:
    """The documented draw: whole trajectories in the order default_rng(seed).permutation gives, one-row
    timeout-ended ones passed over, until their rows reach int(ratio * N)."""
    wanted = int(ratio * sum(len(ids) for ids, _ in source))
    chosen, total = [], 0
    for index in np.random.default_rng(seed).permutation(len(source)):
        ids, end = source[index]
        if len(ids) == 1 and end != "T":
            continue
        chosen.append(int(index))
        total += len(ids)
        if total >= wanted:
            break
    return chosen


# --- 1. rows per part --------------------------------------------------------------------------------------

@pytest.mark.parametrize("remove_terminals", [True, False], ids=["remove_terminals", "keep_terminals"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rows_per_part(d4rl_cache, scenario, remove_terminals):
    data = load(d4rl_cache, scenario, reward_set_ratio=0.2, seed=0, remove_terminals=remove_terminals)
    from_union = scenario == "rl_sample"
    source = union_trajectories() if from_union else trajectories("expert")
    source_rows = ACTION_SET_ROWS if from_union else SIZES["expert"]

    chosen = split_into_source_trajectories(data.reward_set, source)
    assert chosen == expected_choice(source, 0.2, seed=0)
    lengths = [len(source[i][0]) for i in chosen]
    reward_rows = sum(lengths)
    assert len(chosen) >= 2  # 20 % takes several trajectories here
    assert reward_rows >= int(0.2 * source_rows) > reward_rows - lengths[-1]  # stops at the first that reaches it
    assert reward_rows >= int(0.01 * source_rows)

    removed = TERMINAL_ROWS if remove_terminals else 0
    copied = reward_rows if scenario in ("il", "rl_expert") else 0
    assert data.size == ACTION_SET_ROWS - removed + copied
    assert data.reward_set.size == reward_rows
    action_parts = {**SIZES, "rows": data.size}
    del action_parts["expert"]
    if remove_terminals:
        action_parts["terminal_rows_removed"] = TERMINAL_ROWS
    if copied:
        action_parts["expert_copy"] = copied
    assert data.parts == {
        "action_set": action_parts,
        "reward_set": {"drawn_from": "action set" if from_union else "expert", "source_rows": source_rows,
                       "rows": reward_rows, "trajectories": len(chosen)},
    }
    assert [SIZES[q] for q in QUALITIES] == [15, 16, 12, 11, 38] and (ACTION_SET_ROWS, TERMINAL_ROWS) == (54, 8)


def test_the_draw_is_seeded(d4rl_cache):
    def reward_ids(seed, scenario="rl_expert"):
        return row_ids(load(d4rl_cache, scenario, reward_set_ratio=0.2, seed=seed).reward_set)

    np.testing.assert_array_equal(reward_ids(0), reward_ids(0))
    assert not np.array_equal(reward_ids(0), reward_ids(1))
    np.testing.assert_array_equal(reward_ids(3, "rl_sample"), reward_ids(3, "rl_sample"))
    assert not np.array_equal(reward_ids(0, "rl_sample"), reward_ids(1, "rl_sample"))
    # The seed, not the scenario, decides which expert trajectories are drawn.
    np.testing.assert_array_equal(reward_ids(2, "il"), reward_ids(2, "rlfo"))


def test_all_set_names_ignore_case_and_evaluate_on_the_first_part(d4rl_cache):
    data = load_dataset("Hopper-All-v2", d4rl_dir=d4rl_cache, dataset_url=UNREACHABLE, scenario="rl_expert")
    assert data.eval_env_id == "Hopper-v4" and data.eval_env_kwargs == {}
    assert data.reward_set.eval_env_id == "Hopper-v4"
    assert data.score.normalise(3234.3) == pytest.approx(100.0)
    assert data.reward_set.score == data.score


# --- 2. which labels each scenario removes ---------------------------------------------------------------

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_reward_set_labels_and_the_expert_copy(d4rl_cache, scenario):
    data = load(d4rl_cache, scenario, reward_set_ratio=0.2, seed=4)
    reward_set = data.reward_set
    ids = row_ids(reward_set)
    if scenario == "rl_sample":
        assert ids.min() < 500  # drawn from the action set's files (ids 100-499), not the expert's (500-537)
        true_rewards = ids / 100
        union_ids = np.concatenate([file_arrays(q)["observations"][:, 0] for q in ACTION_QUALITIES]).astype(int)
        true_actions = np.concatenate([file_arrays(q)["actions"] for q in ACTION_QUALITIES])[
            np.searchsorted(union_ids, ids)]
    else:
        assert ids.min() >= 500
        true_rewards = expert_rows(ids, "rewards")
        true_actions = expert_rows(ids, "actions")

    if scenario in ("il", "ilfo"):
        np.testing.assert_array_equal(reward_set.rewards, np.ones(reward_set.size, np.float32))
        assert data.reward_range == (0.0, 1.0)
    else:
        np.testing.assert_allclose(reward_set.rewards, true_rewards, rtol=1e-6)
        assert data.reward_range == (float(reward_set.rewards.min()), float(reward_set.rewards.max()))
        assert data.reward_range[0] >= (5.0 if scenario != "rl_sample" else 1.0)

    if scenario in ("ilfo", "rlfo"):
        assert reward_set.actions.shape == (reward_set.size, 0)
        assert reward_set.next_actions.shape == (reward_set.size, 0)
    else:
        np.testing.assert_array_equal(reward_set.actions, true_actions)

    tail = data.observations[ACTION_SET_ROWS - TERMINAL_ROWS:]
    if scenario in ("il", "rl_expert"):
        copy = slice(ACTION_SET_ROWS - TERMINAL_ROWS, None)
        np.testing.assert_array_equal(data.observations[copy], reward_set.observations)
        np.testing.assert_array_equal(data.next_observations[copy], reward_set.next_observations)
        np.testing.assert_array_equal(data.actions[copy], expert_rows(ids, "actions"))
        np.testing.assert_array_equal(data.terminals[copy], reward_set.terminals)
        np.testing.assert_array_equal(data.has_td_target[copy], reward_set.has_td_target)
        np.testing.assert_allclose(data.rewards[copy], expert_rows(ids, "rewards"), rtol=1e-6)  # the true ones
    else:
        assert len(tail) == 0
        assert row_ids(data).max() < 500  # no expert row in the action set


def test_reward_set_next_observations_follow_each_row_in_its_own_trajectory(d4rl_cache):
    reward_set = load(d4rl_cache, "rlfo", reward_set_ratio=0.5, seed=1).reward_set
    ids = row_ids(reward_set)
    next_ids = np.rint(reward_set.next_observations[:, 0]).astype(int)
    inside = ~reward_set.episode_ends
    np.testing.assert_array_equal(next_ids[inside], ids[inside] + 1)
    assert reward_set.has_td_target[inside].all()


# --- 3. whole trajectories ------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["rlfo", "rl_sample"])
def test_the_one_percent_draw_is_whole_trajectories_never_a_one_row_timeout(d4rl_cache, scenario):
    source = union_trajectories() if scenario == "rl_sample" else trajectories("expert")
    for seed in range(25):
        data = load(d4rl_cache, scenario, seed=seed)  # the default 1 %: int(0.01 * N) = 0 rows wanted
        chosen = split_into_source_trajectories(data.reward_set, source)
        assert chosen == expected_choice(source, 0.01, seed)
        assert len(chosen) == 1 and len(source[chosen[0]][0]) >= 1
        assert not ONE_ROW_TIMEOUT_IDS & set(row_ids(data.reward_set).tolist())
        assert data.parts["reward_set"]["trajectories"] == 1


@pytest.mark.parametrize("scenario", ["il", "rl_sample"])
def test_drawing_every_row_takes_all_trajectories_but_the_one_row_timeouts(d4rl_cache, scenario):
    source = union_trajectories() if scenario == "rl_sample" else trajectories("expert")
    data = load(d4rl_cache, scenario, reward_set_ratio=1.0, seed=7)
    chosen = split_into_source_trajectories(data.reward_set, source)
    usable = {i for i, (ids, end) in enumerate(source) if not (len(ids) == 1 and end == "t")}
    assert sorted(chosen) == sorted(usable)
    assert len(chosen) == len(set(chosen))
    one_row_timeouts = 2 if scenario == "il" else 1
    assert data.reward_set.size == (SIZES["expert"] if scenario == "il" else ACTION_SET_ROWS) - one_row_timeouts
    assert ONE_ROW_TIMEOUT_IDS == {206, 509, 519}
    # a one-row terminal trajectory (expert id 531, union id 100) is a transition and can be drawn
    assert (531 if scenario == "il" else 100) in row_ids(data.reward_set)


# --- 4. terminals leave the action set only ---------------------------------------------------------------

def action_set_without_terminals() -> tuple[list[int], list[int]]:
    """The union's row ids after every terminal row is dropped, and the ids that then end a trajectory."""
    kept, ends = [], []
    for ids, end in union_trajectories():
        rows = ids[:-1] if end == "T" else ids
        kept += rows.tolist()
        if len(rows):
            ends.append(int(rows[-1]))
    return kept, ends


@pytest.mark.parametrize("scenario", ["il", "rlfo", "rl_sample"])
def test_remove_terminals_acts_on_the_action_set_only(d4rl_cache, scenario):
    data = load(d4rl_cache, scenario, reward_set_ratio=0.3, seed=2, remove_terminals=True)
    kept, ends = action_set_without_terminals()
    union_part = slice(0, len(kept))
    assert len(kept) == ACTION_SET_ROWS - TERMINAL_ROWS == 46
    np.testing.assert_array_equal(row_ids(data)[union_part], kept)
    assert not data.terminals[union_part].any()
    ids = row_ids(data)[union_part]
    episode_end_ids = ids[data.episode_ends[union_part]].tolist()
    assert episode_end_ids == ends
    no_target_ids = ids[~data.has_td_target[union_part]].tolist()
    assert no_target_ids == ends  # each trajectory's new last row ends it as a timeout: no bootstrap
    # the terminal rows are gone; the row before each (when in the same trajectory) now ends it, as a timeout
    assert {int(ids_[-1]) for ids_, end in union_trajectories() if end == "T"} == {100, 103, 109, 210, 301, 311,
                                                                                    403, 404}
    assert not {100, 103, 109, 210, 301, 311, 403, 404} & set(kept)
    marked = np.isin(ids, [102, 108, 209, 300, 310, 402])  # 100 and 404 were one-row trajectories: gone whole
    assert marked.sum() == 6
    assert data.episode_ends[union_part][marked].all() and not data.has_td_target[union_part][marked].any()

    source = union_trajectories() if scenario == "rl_sample" else trajectories("expert")
    chosen = split_into_source_trajectories(data.reward_set, source)  # checks D_r's terminals are kept
    assert data.reward_set.terminals.sum() == sum(source[i][1] == "T" for i in chosen) > 0
    if scenario == "il":  # the expert copy keeps its terminals too
        np.testing.assert_array_equal(data.terminals[len(kept):], data.reward_set.terminals)
    else:
        assert data.size == len(kept) and not data.terminals.any()


def test_keeping_terminals_keeps_the_union_as_it_is(d4rl_cache):
    data = load(d4rl_cache, "rlfo", reward_set_ratio=0.2, seed=0, remove_terminals=False)
    union = {key: np.concatenate([file_arrays(q)[key] for q in ACTION_QUALITIES]) for key in
             ("observations", "actions", "rewards", "terminals")}
    np.testing.assert_array_equal(data.observations, union["observations"])
    np.testing.assert_array_equal(data.actions, union["actions"])
    np.testing.assert_array_equal(data.terminals, union["terminals"].astype(np.float32))
    assert data.terminals.sum() == TERMINAL_ROWS
    assert "terminal_rows_removed" not in data.parts["action_set"]


# --- 5. local sets and the plain union ----------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["il", "rlfo", "rl_sample"])
def test_local_all_set_assembles_as_the_d4rl_one(tmp_path, d4rl_cache, scenario):
    data_dir = write_local_files(tmp_path / "data")
    local = load_dataset("local/hopper-all-v0", data_dir=data_dir, scenario=scenario, reward_set_ratio=0.2, seed=5)
    d4rl = load(d4rl_cache, scenario, reward_set_ratio=0.2, seed=5)
    for key in ("observations", "actions", "rewards", "terminals", "next_observations", "has_td_target"):
        np.testing.assert_array_equal(getattr(local, key), getattr(d4rl, key))
        np.testing.assert_array_equal(getattr(local.reward_set, key), getattr(d4rl.reward_set, key))
    assert local.parts == d4rl.parts
    assert local.reward_range == d4rl.reward_range
    assert local.eval_env_id == "Hopper-v4"
    assert local.score.source == LOCAL_SCORE_SOURCE


@pytest.mark.parametrize("local", [False, True], ids=["d4rl", "local"])
def test_an_all_set_without_a_scenario_is_the_plain_union(tmp_path, cache_without_expert, local):
    if local:
        data_dir = write_local_files(tmp_path / "data", ACTION_QUALITIES)  # no expert file: none is needed
        data = load_dataset("local/hopper-all-v0", data_dir=data_dir)
        assert data.score.source == LOCAL_SCORE_SOURCE
    else:
        data = load(cache_without_expert, "none")
    union = {key: np.concatenate([file_arrays(q)[key] for q in ACTION_QUALITIES]) for key in
             ("observations", "actions", "rewards", "terminals")}
    np.testing.assert_array_equal(data.observations, union["observations"])
    np.testing.assert_array_equal(data.actions, union["actions"])
    np.testing.assert_array_equal(data.rewards, union["rewards"])  # the true rewards
    np.testing.assert_array_equal(data.terminals, union["terminals"].astype(np.float32))
    # every part's last row ends an episode: no trajectory runs from one file into the next
    starts = np.cumsum([SIZES[q] for q in ACTION_QUALITIES]) - 1
    assert data.episode_ends[starts].all()
    assert data.reward_set is None and data.reward_range is None
    assert data.parts == {"action_set": {q: SIZES[q] for q in ACTION_QUALITIES}}
    assert data.eval_env_id == "Hopper-v4"


def test_rl_sample_needs_no_expert_file(cache_without_expert):
    data = load(cache_without_expert, "rl_sample", reward_set_ratio=0.2, seed=0)
    split_into_source_trajectories(data.reward_set, union_trajectories())
    assert data.parts["reward_set"]["drawn_from"] == "action set"


# --- 6. errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["il", "ilfo", "rl_expert", "rlfo"])
def test_a_missing_expert_file_is_named_with_its_folder(tmp_path, cache_without_expert, scenario):
    data_dir = write_local_files(tmp_path / "data", ACTION_QUALITIES)
    missing = data_dir / "local" / "hopper-expert-v0.hdf5"
    with pytest.raises(UserInputError, match=rf"--scenario {scenario} draws the reward set from the expert set "
                                             rf"of local/hopper-all-v0: no local dataset {re.escape(str(missing))}"):
        load_dataset("local/hopper-all-v0", data_dir=data_dir, scenario=scenario)

    with pytest.raises(UserInputError) as error:
        load(cache_without_expert, scenario)
    message = str(error.value)
    assert message.startswith(f"--scenario {scenario} draws the reward set from the expert set of hopper-all-v2: "
                              f"could not download {UNREACHABLE}/hopper_expert-v2.hdf5")
    assert f"put hopper_expert-v2.hdf5 in {cache_without_expert} by hand" in message
    assert not (cache_without_expert / "hopper_expert-v2.hdf5").exists()
    assert sorted(p.name for p in cache_without_expert.iterdir()) == sorted(
        d4rl_file_name(f"hopper-{q}-v2") for q in ACTION_QUALITIES)  # no partial download left


@pytest.mark.parametrize("scenario", ["il", "ilfo", "rl_expert", "rlfo"])
def test_an_expert_scenario_on_a_dataset_that_is_not_an_all_set_is_refused(scenario):
    with pytest.raises(UserInputError, match=rf"--scenario {scenario} draws the reward set from an expert set, "
                                             r"which toy-multimodal does not have; use an all-set "
                                             r"\(hopper-all-v2, local/hopper-all-v0\) or --scenario rl_sample"):
        load_dataset("toy-multimodal", toy_size=64, scenario=scenario)


def test_remove_terminals_on_all_terminal_data_is_refused():
    with pytest.raises(UserInputError, match=r"--remove_terminals 1 leaves no rows of toy-multimodal in the "
                                             r"action set \(every row is terminal\); use --remove_terminals 0"):
        load_dataset("toy-multimodal", toy_size=64, scenario="rl_sample", remove_terminals=True)
    data = load_dataset("toy-multimodal", toy_size=64, scenario="rl_sample", remove_terminals=False,
                        reward_set_ratio=0.1)
    assert data.size == 64 and data.reward_set.size == 6  # one-step trajectories: exactly int(0.1 * 64) rows
    assert data.reward_set.terminals.all()
    assert data.parts["reward_set"] == {"drawn_from": "action set", "source_rows": 64, "rows": 6, "trajectories": 6}


def test_a_reward_set_with_no_transition_to_draw_is_refused(tmp_path):
    size = 5  # five one-row trajectories, each cut by a timeout
    write_hdf5(tmp_path / d4rl_file_name("hopper-medium-v2"), **{**file_arrays("random"), **{
        key: value[:size] for key, value in file_arrays("random").items()},
        "terminals": np.zeros(size, bool), "timeouts": np.ones(size, bool)})
    with pytest.raises(UserInputError, match="the reward set would be empty: the data has no trajectory with a "
                                             "transition"):
        load_dataset("hopper-medium-v2", d4rl_dir=tmp_path, dataset_url=UNREACHABLE, scenario="rl_sample")


# --- 7. the Buffer ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["il", "rlfo"])
def test_buffer_holds_the_reward_set_with_the_action_sets_normaliser(d4rl_cache, scenario):
    data = load(d4rl_cache, scenario, reward_set_ratio=0.3, seed=0)
    buffer = Buffer(data, torch.device("cpu"), normalise=True)
    reward_buffer = buffer.reward_set
    assert reward_buffer is not None and reward_buffer.reward_set is None
    mean, std = data.observations.mean(0), data.observations.std(0) + STD_FLOOR  # fitted on D_a
    np.testing.assert_allclose(buffer.normaliser.mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(buffer.normaliser.std.numpy(), std, rtol=1e-5)
    assert reward_buffer.normaliser is buffer.normaliser
    np.testing.assert_allclose(reward_buffer.observations.numpy(), (data.reward_set.observations - mean) / std,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reward_buffer.next_observations.numpy(),
                               (data.reward_set.next_observations - mean) / std, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(reward_buffer.rewards.numpy(), data.reward_set.rewards)
    assert reward_buffer.size == data.reward_set.size
    assert reward_buffer.act_dim == (0 if scenario == "rlfo" else ACT_DIM)
    assert buffer.reward_range == data.reward_range and reward_buffer.reward_range is None
    assert buffer.reward_range == ((0.0, 1.0) if scenario == "il" else
                                   (float(data.reward_set.rewards.min()), float(data.reward_set.rewards.max())))


def test_buffer_of_a_plain_dataset_has_no_reward_set(cache_without_expert):
    buffer = Buffer(load(cache_without_expert, "none"), torch.device("cpu"), normalise=True)
    assert buffer.reward_set is None and buffer.reward_range is None


# --- 8. the scenario matrix through train.py ---------------------------------------------------------------

def train(repo, agent: str, scenario: str, run_dir, d4rl_dir, *flags: str) -> subprocess.CompletedProcess:
    """A few steps of train.py on the hand-made hopper-all-v2 files, with the contract suite's small settings."""
    settings = run_dir.parent / f"{agent}_tiny.yaml"
    settings.write_text(yaml.safe_dump(tiny_settings(agent)))
    command = [sys.executable, "train.py", "--agent", agent, "--env_name", "hopper-all-v2", "--scenario", scenario,
               "--d4rl_dir", str(d4rl_dir), "--dataset_url", UNREACHABLE, "--config", str(settings),
               "--training_steps", "4", "--eval_every", "4", "--eval_episodes", "1", "--run_dir", str(run_dir),
               "--gmm_dir", str(run_dir.parent / "cache"), *flags]
    return subprocess.run(command, cwd=repo, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mahalo_trains_in_every_scenario_and_its_run_records_the_parts(repo, d4rl_cache, tmp_path, scenario):
    result = train(repo, "mahalo", scenario, tmp_path / "run", d4rl_cache)
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == f"hopper-all-v2_{scenario}" and config["scenario"] == scenario
    assert config["dataset_parts"] == load(d4rl_cache, scenario).parts
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 4 and np.isfinite(summary["final_score"])


REFUSED = {  # (agent, scenario, the start of the one-line error)
    "ilfo with uds": ("uds", "ilfo", "error: --scenario ilfo"),
    "rlfo with atac": ("atac", "rlfo", "error: --scenario rlfo"),
    "a scenario with an agent of one dataset": ("bc", "il", "error: --scenario il makes two datasets, but --agent "
                                                            "bc learns from one"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_scenario_an_agent_cannot_use_is_refused_before_training(repo, d4rl_cache, tmp_path, case):
    agent, scenario, expected = REFUSED[case]
    result = train(repo, agent, scenario, tmp_path / "run", d4rl_cache)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(expected) and agent in line
    assert not (tmp_path / "run").exists()


def test_a_missing_expert_file_stops_train_py_in_one_line_naming_it(repo, cache_without_expert, tmp_path):
    result = train(repo, "mahalo", "il", tmp_path / "run", cache_without_expert)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "hopper_expert-v2.hdf5" in line and str(cache_without_expert) in line
    assert not (tmp_path / "run").exists()
