"""datasources/ on real files: HDF5 written here, a loopback HTTP server, a Minari dataset made here."""

import contextlib
import functools
import http.server
import os
import re
import threading

import gymnasium as gym
import h5py
import numpy as np
import pytest

from datasources import load_dataset
from datasources.d4rl import D4RL_NAMES, d4rl_file_name
from utils.dataset import Dataset, ScoreReference, transitions_from_arrays
from utils.errors import UserInputError
from utils.files import written_atomically

HOPPER_OBS_DIM, HOPPER_ACT_DIM = 11, 3

# Eight rows, four episodes: rows 0-1 end in a terminal, row 2 alone ends in a terminal, rows 3-5 end in
# a timeout, rows 6-7 are the file's tail and end with neither.
TERMINALS = np.array([0, 1, 1, 0, 0, 0, 0, 0], np.float32)
TIMEOUTS = np.array([0, 0, 0, 0, 0, 1, 0, 0], np.float32)
OBS = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # row i observes (i, i)
ACTIONS = np.arange(8, dtype=np.float32)[:, None] / 10  # row i acts i / 10
REWARDS = np.arange(8, dtype=np.float32) / 10
FILE_NEXT_OBS = OBS + 0.5  # distinct from any obs so we can tell where it was used

EXPECTED_NEXT_ACTIONS = np.array([1, 1, 2, 4, 5, 5, 7, 7], np.float32)[:, None] / 10
EXPECTED_NEXT_OBS_WITHOUT_FILE_KEY = np.array([1, 1, 2, 4, 5, 5, 7, 7], np.float32)[:, None] * np.ones((1, 2))
EXPECTED_HAS_TD_TARGET = np.array([1, 1, 1, 1, 1, 0, 1, 0], bool)


def write_hdf5(path, obs_dim=2, act_dim=1, with_next_obs=False, drop=(), **arrays):
    """A D4RL-format file with the hand-made rows above (or `arrays`), plus infos/ and metadata/ noise."""
    data = {
        "observations": OBS if obs_dim == 2 else np.repeat(OBS[:, :1], obs_dim, axis=1),
        "actions": ACTIONS if act_dim == 1 else np.repeat(ACTIONS, act_dim, axis=1),
        "rewards": REWARDS,
        "terminals": TERMINALS.astype(bool),
        "timeouts": TIMEOUTS.astype(bool),
    }
    if with_next_obs:
        data["next_observations"] = FILE_NEXT_OBS if obs_dim == 2 else data["observations"] + 0.5
    data.update(arrays)
    with h5py.File(path, "w") as file:
        for key, value in data.items():
            if key not in drop:
                file[key] = value
        file["infos/qpos"] = np.zeros((len(REWARDS), 3))
        file["metadata/algorithm"] = "sac"
    return path


def make_d4rl_file(folder, name="hopper-medium-replay-v2"):
    folder.mkdir(parents=True, exist_ok=True)
    return write_hdf5(folder / d4rl_file_name(name), obs_dim=HOPPER_OBS_DIM, act_dim=HOPPER_ACT_DIM)


@pytest.mark.parametrize("with_next_obs", [False, True])
def test_next_actions_never_cross_episode_boundaries(tmp_path, with_next_obs):
    path = write_hdf5(tmp_path / "mine.hdf5", with_next_obs=with_next_obs)
    data = load_dataset("ignored", dataset_path=path, eval_env="Hopper-v4")

    assert data.name == "mine"
    np.testing.assert_array_equal(data.terminals, TERMINALS)  # the timeout row (5) stays 0
    np.testing.assert_array_equal(data.next_actions, EXPECTED_NEXT_ACTIONS)
    np.testing.assert_array_equal(data.has_td_target, EXPECTED_HAS_TD_TARGET)
    expected_next_obs = FILE_NEXT_OBS if with_next_obs else EXPECTED_NEXT_OBS_WITHOUT_FILE_KEY
    np.testing.assert_array_equal(data.next_observations, expected_next_obs)
    np.testing.assert_array_equal(data.observations, OBS)
    np.testing.assert_array_equal(data.rewards, REWARDS)
    float_fields = ("observations", "actions", "rewards", "terminals", "next_observations", "next_actions")
    for array in (getattr(data, field) for field in float_fields):
        assert array.dtype == np.float32
    assert data.has_td_target.dtype == bool
    assert (data.size, data.obs_dim, data.act_dim, data.num_episodes) == (8, 2, 1, 4)


def test_missing_timeouts_mean_only_terminals_and_the_last_row_end_episodes():
    data = transitions_from_arrays(
        "x", OBS, ACTIONS, REWARDS, TERMINALS, eval_env_id="Hopper-v4", source="test arrays"
    )
    np.testing.assert_array_equal(data.next_actions, np.array([1, 1, 2, 4, 5, 6, 7, 7], np.float32)[:, None] / 10)
    np.testing.assert_array_equal(data.has_td_target, [1, 1, 1, 1, 1, 1, 1, 0])
    assert data.num_episodes == 3 and data.score is None


def test_score_reference_normalises_floats_and_arrays():
    score = ScoreReference(-20.0, 180.0, "user")
    assert score.normalise(180.0) == pytest.approx(100.0)
    assert isinstance(score.normalise(80.0), float) and score.normalise(80.0) == pytest.approx(50.0)
    np.testing.assert_allclose(score.normalise(np.array([-20.0, 30.0])), [0.0, 25.0])
    with pytest.raises(UserInputError, match="max > min"):
        ScoreReference(1.0, 1.0, "user")


def check_hopper_d4rl(data: Dataset, path):
    assert data.name == "hopper-medium-replay-v2"
    assert data.eval_env_id == "Hopper-v4" and data.eval_env_kwargs == {}
    assert data.source == str(path)
    assert (data.size, data.obs_dim, data.act_dim) == (8, HOPPER_OBS_DIM, HOPPER_ACT_DIM)
    assert data.score == ScoreReference(-20.272305, 3234.3, "D4RL")
    assert data.score.normalise(3234.3) == pytest.approx(100.0)
    assert data.score.normalise(-20.272305) == pytest.approx(0.0)
    assert data.score.normalise(1607.013848) == pytest.approx(50.0)  # midpoint: (3234.3 - 20.272305) / 2


def test_d4rl_name_loads_from_the_folder_argument(tmp_path):
    path = make_d4rl_file(tmp_path)
    assert path.name == "hopper_medium_replay-v2.hdf5"
    check_hopper_d4rl(load_dataset("Hopper-Medium-Replay-v2", d4rl_dir=tmp_path), path)


def test_d4rl_name_loads_from_the_env_var_folder(tmp_path, monkeypatch):
    path = make_d4rl_file(tmp_path / "cache")
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("D4RL_DATASET_URL", "http://127.0.0.1:9/never-used")
    check_hopper_d4rl(load_dataset("hopper-medium-replay-v2"), path)


def test_d4rl_ant_and_halfcheetah_tasks(tmp_path):
    make_d4rl_file(tmp_path, "ant-full-replay-v2")
    make_d4rl_file(tmp_path, "halfcheetah-medium-expert-v2")
    ant = load_dataset("ant-full-replay-v2", d4rl_dir=tmp_path)
    assert (ant.eval_env_id, ant.eval_env_kwargs) == ("Ant-v4", {"use_contact_forces": True})
    assert ant.score == ScoreReference(-325.6, 3879.7, "D4RL")
    cheetah = load_dataset("HalfCheetah-medium-expert-v2", d4rl_dir=tmp_path)
    assert cheetah.eval_env_id == "HalfCheetah-v4"
    assert cheetah.score == ScoreReference(-280.178953, 12135.0, "D4RL")


def test_d4rl_names_and_file_names():
    assert len(D4RL_NAMES) == len(set(D4RL_NAMES)) == 24
    assert d4rl_file_name("halfcheetah-medium-replay-v2") == "halfcheetah_medium_replay-v2.hdf5"
    assert d4rl_file_name("hopper-full-replay-v2") == "hopper_full_replay-v2.hdf5"
    assert d4rl_file_name("walker2d-random-v2") == "walker2d_random-v2.hdf5"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server(handler):
    """An HTTP server on 127.0.0.1 only, answering with `handler`; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def file_server(tmp_path):
    """Serves tmp_path/served over HTTP on 127.0.0.1 only; yields the folder and the base URL."""
    served = tmp_path / "served"
    served.mkdir()
    with http_server(functools.partial(QuietHandler, directory=served)) as base:
        yield served, f"{base}/datasets"


def test_download_puts_the_file_in_the_cache(tmp_path, file_server):
    served, url = file_server
    source = make_d4rl_file(served / "datasets")
    cache = tmp_path / "cache" / "nested"

    data = load_dataset("hopper-medium-replay-v2", d4rl_dir=cache, dataset_url=url)

    assert sorted(p.name for p in cache.iterdir()) == ["hopper_medium_replay-v2.hdf5"]
    assert (cache / source.name).read_bytes() == source.read_bytes()
    check_hopper_d4rl(data, cache / source.name)


def test_failed_download_names_url_and_flags_and_leaves_nothing(tmp_path, file_server):
    _, url = file_server
    cache = tmp_path / "cache"
    with pytest.raises(UserInputError, match=r"--dataset_url") as caught:
        load_dataset("walker2d-expert-v2", d4rl_dir=cache, dataset_url=url)
    message = str(caught.value)
    assert f"{url}/walker2d_expert-v2.hdf5" in message and "404" in message
    assert "--d4rl_dir" in message and "D4RL_DATASET_URL" in message and "\n" not in message
    assert list(cache.iterdir()) == []


def test_download_into_a_folder_that_cannot_be_made_says_so_and_how_to_fix_it(tmp_path, file_server):
    _, url = file_server
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cache = blocker / "cache"  # its parent is a file: the folder cannot be created
    with pytest.raises(UserInputError, match=r"could not download .*hopper_medium-v2\.hdf5 \(.*Not a directory") \
            as caught:
        load_dataset("hopper-medium-v2", d4rl_dir=cache, dataset_url=url)
    assert "--d4rl_dir" in str(caught.value) and "\n" not in str(caught.value)
    assert blocker.read_text() == "not a folder"


class TruncatingHandler(QuietHandler):
    """Promises 1000 bytes, sends 10, hangs up: a connection lost mid-download."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.close_connection = True


def test_interrupted_download_leaves_no_partial_file(tmp_path):
    cache = tmp_path / "cache"
    with http_server(TruncatingHandler) as url:
        with pytest.raises(UserInputError, match="could not download http://127.0.0.1"):
            load_dataset("ant-random-v2", d4rl_dir=cache, dataset_url=url)
    assert list(cache.iterdir()) == []


ERROR_PAGE = b"<!DOCTYPE html><html><body><h1>Access denied</h1><p>Sign in to the proxy.</p></body></html>"


def serve_error_page(path):
    """What a proxy or mirror that answers with a 200 HTML page puts where the file should be."""
    path.write_bytes(ERROR_PAGE)


def serve_file_without_terminals(path):
    write_hdf5(path, obs_dim=HOPPER_OBS_DIM, act_dim=HOPPER_ACT_DIM, drop=("terminals",))


def serve_file_with_short_rewards(path):
    write_hdf5(path, obs_dim=HOPPER_OBS_DIM, act_dim=HOPPER_ACT_DIM, rewards=REWARDS[:5])


@pytest.mark.parametrize("serve, problem", [
    (serve_error_page, r": it does not open as HDF5 \(.*signature"),
    (serve_file_without_terminals, r": it lacks the dataset key\(s\) terminals;"),
    (serve_file_with_short_rewards, r": rewards has 5 rows but observations have 8;"),
], ids=["html-page", "no-terminals", "short-rewards"])
def test_a_download_that_is_no_d4rl_file_is_refused_and_not_kept(tmp_path, file_server, serve, problem):
    served, url = file_server
    (served / "datasets").mkdir()
    serve(served / "datasets" / d4rl_file_name("hopper-medium-v2"))
    cache = tmp_path / "cache"

    with pytest.raises(UserInputError) as caught:
        load_dataset("hopper-medium-v2", d4rl_dir=cache, dataset_url=url)

    message = str(caught.value)
    assert re.match(rf"could not download {re.escape(url)}/hopper_medium-v2\.hdf5{problem}", message), message
    assert "--dataset_url" in message and "--d4rl_dir" in message and "\n" not in message
    assert list(cache.iterdir()) == []  # neither the bad file nor its temporary file


@pytest.fixture(params=[(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def umask_and_mode(request):
    """Sets the process umask for one test; yields the mode it allows a normal file."""
    umask, mode = request.param
    previous = os.umask(umask)
    try:
        yield mode
    finally:
        os.umask(previous)


def test_a_file_written_atomically_gets_the_mode_the_umask_allows(tmp_path, umask_and_mode):
    path = tmp_path / "shared" / "data.bin"
    with written_atomically(path) as partial:
        partial.write_bytes(b"complete")
    assert path.read_bytes() == b"complete"
    assert path.stat().st_mode & 0o777 == umask_and_mode
    assert [p.name for p in path.parent.iterdir()] == ["data.bin"]


def test_a_downloaded_d4rl_file_gets_the_mode_the_umask_allows(tmp_path, file_server, umask_and_mode):
    served, url = file_server
    make_d4rl_file(served / "datasets")
    cache = tmp_path / "cache"
    load_dataset("hopper-medium-replay-v2", d4rl_dir=cache, dataset_url=url)
    assert (cache / "hopper_medium_replay-v2.hdf5").stat().st_mode & 0o777 == umask_and_mode


def test_dataset_path_with_module_prefixed_eval_env(tmp_path):
    path = write_hdf5(tmp_path / "hop.hdf5", obs_dim=HOPPER_OBS_DIM, act_dim=HOPPER_ACT_DIM)
    env_id = "gymnasium.envs.mujoco.hopper_v4:Hopper-v4"
    data = load_dataset("label", dataset_path=path, eval_env=env_id)
    assert data.eval_env_id == env_id
    assert data.score == ScoreReference(-20.272305, 3234.3, "D4RL")
    envs = gym.make_vec(data.eval_env_id, num_envs=2, **data.eval_env_kwargs)
    try:
        assert envs.single_observation_space.shape == (data.obs_dim,)
        assert envs.single_action_space.shape == (data.act_dim,)
    finally:
        envs.close()


def test_dataset_path_scores(tmp_path):
    path = write_hdf5(tmp_path / "mine.hdf5")
    assert load_dataset("x", dataset_path=path, eval_env="Pendulum-v1").score is None
    user = load_dataset("x", dataset_path=path, eval_env="Hopper-v4", ref_min_score=0, ref_max_score=10)
    assert user.score == ScoreReference(0.0, 10.0, "user") and user.score.normalise(5.0) == pytest.approx(50.0)
    with pytest.raises(UserInputError, match="both --ref_min_score and --ref_max_score"):
        load_dataset("x", dataset_path=path, eval_env="Hopper-v4", ref_min_score=0)


def test_dataset_path_errors(tmp_path):
    path = write_hdf5(tmp_path / "mine.hdf5")
    with pytest.raises(UserInputError, match="--dataset_path needs --eval_env ENV_ID"):
        load_dataset("x", dataset_path=path)
    with pytest.raises(UserInputError, match="is not a file"):
        load_dataset("x", dataset_path=tmp_path / "absent.hdf5", eval_env="Hopper-v4")

    no_rewards = write_hdf5(tmp_path / "no_rewards.hdf5", drop=("rewards",))
    with pytest.raises(UserInputError, match=r"no_rewards\.hdf5: it lacks the dataset key\(s\) rewards"):
        load_dataset("x", dataset_path=no_rewards, eval_env="Hopper-v4")

    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"this is not an hdf5 file at all" * 10)
    with pytest.raises(UserInputError, match=r"cannot read .*garbage\.hdf5 as HDF5"):
        load_dataset("x", dataset_path=garbage, eval_env="Hopper-v4")

    short = write_hdf5(tmp_path / "short.hdf5", rewards=REWARDS[:5])
    with pytest.raises(UserInputError, match=r"short\.hdf5: rewards has 5 rows but observations have 8"):
        load_dataset("x", dataset_path=short, eval_env="Hopper-v4")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UserInputError, match="hopper-medium-replay-v2") as caught:
        load_dataset("hopper-medium-replay-v3")
    message = str(caught.value)
    assert "mujoco/halfcheetah/medium-v0" in message and "--dataset_path FILE --eval_env ENV_ID" in message
    assert "\n" not in message


def test_eval_env_argument_overrides_a_named_dataset():
    data = load_dataset("toy-multimodal", toy_size=10, eval_env="Pendulum-v1")
    assert (data.eval_env_id, data.eval_env_kwargs) == ("Pendulum-v1", {})


def test_toy_multimodal_is_deterministic_and_one_step():
    from envs import TOY_ENV_ID
    from envs.toy_multimodal import OPTIMAL_REWARD, RANDOM_POLICY_REWARD

    data = load_dataset("Toy-Multimodal", toy_size=500, seed=3)
    again = load_dataset("toy-multimodal", toy_size=500, seed=3)
    other = load_dataset("toy-multimodal", toy_size=500, seed=4)
    assert data.name == "toy-multimodal" and data.eval_env_id == TOY_ENV_ID
    assert (data.size, data.obs_dim, data.act_dim, data.num_episodes) == (500, 1, 2, 500)
    np.testing.assert_array_equal(data.actions, again.actions)
    np.testing.assert_array_equal(data.observations, again.observations)
    assert not np.array_equal(data.actions, other.actions)
    assert np.all(data.terminals == 1.0) and np.all(data.has_td_target)
    np.testing.assert_array_equal(data.next_actions, data.actions)
    assert data.score == ScoreReference(RANDOM_POLICY_REWARD, OPTIMAL_REWARD, "toy-multimodal")
    assert data.score.normalise(OPTIMAL_REWARD) == pytest.approx(100.0)


# ---- Minari -----------------------------------------------------------------------------------------


def minari_episode(rng, steps, terminated, truncated):
    import minari

    terminations = np.zeros(steps, bool)
    truncations = np.zeros(steps, bool)
    terminations[-1], truncations[-1] = terminated, truncated
    return minari.data_collector.EpisodeBuffer(
        observations=rng.standard_normal((steps + 1, HOPPER_OBS_DIM)),
        actions=rng.uniform(-1, 1, (steps, HOPPER_ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(steps),
        terminations=terminations,
        truncations=truncations,
        infos={},
    )


# Minari warns about every metadata field a throwaway test dataset leaves empty.
minari_test = pytest.mark.filterwarnings("ignore::UserWarning:minari")


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))  # minari reads it on every call
    return root


@minari_test
def test_minari_dataset_loads_by_id(minari_root):
    import minari

    rng = np.random.default_rng(0)
    # terminated after 4 steps, truncated after 3, cut off after 2 with neither flag
    episodes = [minari_episode(rng, 4, True, False), minari_episode(rng, 3, False, True)]
    episodes.append(minari_episode(rng, 2, False, False))
    minari.create_dataset_from_buffers(
        dataset_id="test/hopper/tiny-v0",
        buffer=episodes,
        env=gym.make("Hopper-v4"),
        eval_env="Hopper-v4",
        algorithm_name="random",
        ref_min_score=-5.0,
        ref_max_score=45.0,
    )

    data = load_dataset("test/hopper/tiny-v0")

    assert data.name == "test/hopper/tiny-v0"
    assert (data.size, data.obs_dim, data.act_dim, data.num_episodes) == (9, HOPPER_OBS_DIM, HOPPER_ACT_DIM, 3)
    np.testing.assert_array_equal(data.terminals, [0, 0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(data.has_td_target, [1, 1, 1, 1, 1, 1, 0, 1, 0])
    np.testing.assert_allclose(data.observations[:4], episodes[0].observations[:-1].astype(np.float32))
    np.testing.assert_allclose(data.next_observations[4:7], episodes[1].observations[1:].astype(np.float32))
    np.testing.assert_allclose(data.next_actions[7], episodes[2].actions[1])
    np.testing.assert_allclose(data.next_actions[6], episodes[1].actions[2])  # own action, not episode 3's
    assert data.eval_env_id.id == "Hopper-v4"
    assert data.score == ScoreReference(-5.0, 45.0, "Minari")
    envs = gym.make_vec(data.eval_env_id, num_envs=1, **data.eval_env_kwargs)
    assert envs.single_observation_space.shape == (HOPPER_OBS_DIM,)
    envs.close()


@minari_test
def test_minari_without_reference_scores_and_unavailable_ids(minari_root):
    import minari

    rng = np.random.default_rng(1)
    minari.create_dataset_from_buffers(
        dataset_id="test/hopper/noscore-v0", buffer=[minari_episode(rng, 3, True, False)], env=gym.make("Hopper-v4")
    )
    data = load_dataset("test/hopper/noscore-v0")
    assert data.score is None and data.eval_env_id.id == "Hopper-v4"

    unavailable = r"cannot load Minari dataset mujoco/hopper/medium-v0 .*MINARI_DATASETS_PATH"
    with pytest.raises(UserInputError, match=unavailable):
        load_dataset("mujoco/hopper/medium-v0")


def _flat_arrays(size: int = 6) -> dict:
    rng = np.random.default_rng(0)
    return {"observations": rng.standard_normal((size, 3)), "actions": rng.uniform(-1, 1, (size, 2)),
            "rewards": rng.standard_normal(size), "terminals": np.eye(1, size, size - 1)[0]}


@pytest.mark.parametrize("key, row", [("observations", 2), ("actions", 4), ("rewards", 1)])
def test_nan_and_inf_are_counted_located_and_refused(key, row):
    arrays = _flat_arrays()
    arrays[key] = arrays[key].copy()
    arrays[key][row] = np.nan
    arrays[key][row + 1] = np.inf
    with pytest.raises(UserInputError, match=rf"f\.hdf5: {key} has NaN or inf in 2 row\(s\), the first at row {row}"):
        transitions_from_arrays("x", **arrays, eval_env_id="Hopper-v4", source="f.hdf5")


def test_actions_outside_the_unit_box_are_refused_with_their_extent():
    arrays = _flat_arrays()
    arrays["actions"][3] = [0.5, -1.75]
    with pytest.raises(UserInputError, match=r"1 action row\(s\) lie outside \[-1, 1\] \(the first at row 3, "
                                             r"largest magnitude 1\.75\); rescale"):
        transitions_from_arrays("x", **arrays, eval_env_id="Hopper-v4", source="f.hdf5")


def test_actions_a_float32_rounding_outside_the_unit_box_are_clipped_with_a_one_line_note(tmp_path, capsys):
    actions = ACTIONS.copy()
    actions[[2, 5, 7]] = [[1.0000001], [-1.0000001], [1.0000001]]
    assert np.abs(actions[[2, 5, 7]]).min() > 1  # float32 keeps them outside [-1, 1]
    path = write_hdf5(tmp_path / "converted.hdf5", actions=actions)

    data = load_dataset("x", dataset_path=path, eval_env="Hopper-v4")

    np.testing.assert_array_equal(data.actions[[2, 5, 7], 0], [1.0, -1.0, 1.0])
    np.testing.assert_array_equal(np.delete(data.actions, [2, 5, 7], axis=0), np.delete(ACTIONS, [2, 5, 7], axis=0))
    assert np.abs(data.actions).max() == 1.0 and np.abs(data.next_actions).max() == 1.0
    assert capsys.readouterr().err == (f"note: {path}: 3 action row(s) lay within 1e-06 of [-1, 1] and were "
                                       "clipped to it\n")


@pytest.mark.parametrize("value, shown", [(1.5, "1.5"), (-1.0001, "1.0001")], ids=["1.5", "minus-1.0001"])
def test_actions_clearly_outside_the_unit_box_are_refused_with_their_true_magnitude(tmp_path, value, shown):
    actions = ACTIONS.copy()
    actions[[4, 6]] = [[value], [1.0000001]]
    path = write_hdf5(tmp_path / "unscaled.hdf5", actions=actions)
    with pytest.raises(UserInputError, match=rf"unscaled\.hdf5: 1 action row\(s\) lie outside \[-1, 1\] \(the first "
                                             rf"at row 4, largest magnitude {re.escape(shown)}\); rescale") as caught:
        load_dataset("x", dataset_path=path, eval_env="Hopper-v4")
    assert float(re.search(r"largest magnitude ([0-9.e+]+)", str(caught.value)).group(1)) > 1


def test_an_empty_dataset_is_refused(tmp_path):
    path = tmp_path / "empty.hdf5"
    with h5py.File(path, "w") as file:
        for key, shape in (("observations", (0, 3)), ("actions", (0, 2)), ("rewards", (0,)), ("terminals", (0,))):
            file[key] = np.zeros(shape, np.float32)
    with pytest.raises(UserInputError, match=r"empty\.hdf5: observations must have shape \(rows, features\) "
                                             r"with rows > 0, got \(0, 3\)"):
        load_dataset("mine", dataset_path=path, eval_env="Hopper-v4")


def test_buffer_episode_returns_sum_each_episodes_rewards(tmp_path):
    """The four episodes above: rows 0-1, row 2, rows 3-5, rows 6-7 (rewards = row / 10)."""
    import torch

    from utils.buffer import Buffer

    data = load_dataset("ignored", dataset_path=write_hdf5(tmp_path / "mine.hdf5"), eval_env="Hopper-v4")
    returns = Buffer(data, torch.device("cpu"), normalise=False).episode_returns()
    assert returns.dtype == torch.float64
    assert returns.tolist() == pytest.approx([0.1, 0.2, 1.2, 1.3])
