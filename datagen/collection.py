"""Locomotion datasets without downloads: online SAC on a MuJoCo task, its whole replay buffer and policy
snapshots, written as D4RL-format HDF5 files (random, medium, medium-replay, full-replay, expert,
medium-expert). Used by `python -m scripts.collect_dataset`; stable-baselines3 is needed only here.

Determinism: every episode of the training env is reset with seed + episode index, and training runs in
chunks that end at snapshot and checkpoint steps. A checkpoint holds the SAC model, the replay buffer, the
random-number states and the env's exact MuJoCo state, so a resumed run collects the same rows as a
straight one (on the same machine and library versions). Its files go to a folder of their own, and
state.json, written last and atomically, names the folder: a run killed while checkpointing resumes from
the previous checkpoint whole, never from a mix of two.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium as gym
import h5py
import mujoco
import numpy as np
import torch
from tqdm import tqdm

from utils.d4rl_tasks import LOCAL_SCORE_SOURCE, LOCAL_VERSION, local_score_reference
from utils.dataset import ScoreReference
from utils.files import generated_data_dir
from utils.errors import UserInputError
from utils.files import written_atomically

ENV_NAMES = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d"}
VERSIONS = ("v4", "v5")
EVAL_SEED_OFFSET = 1_000_000  # evaluation and rollout episodes never share a seed with training episodes


@dataclass(frozen=True)
class Settings:
    env: str = "halfcheetah"
    version: str = "v4"
    seed: int = 0
    steps: int = 1_000_000  # SAC environment steps
    learning_starts: int = 10_000  # uniform random actions before the first gradient step
    snapshot_every: int = 10_000
    checkpoint_every: int = 50_000
    eval_episodes: int = 5  # deterministic episodes per snapshot
    size: int = 1_000_000  # rows of each rollout dataset (random, medium, expert)
    target: float | None = None  # normalised score for medium; None: 1/3 of the best snapshot's
    expert_threshold: float = 80.0  # expert and medium-expert only when the best snapshot reaches this
    out: str = ""  # dataset folder; "" means $LOM_DATA_DIR/local or ~/.cache/lom/datasets/local

    @property
    def env_id(self) -> str:
        return f"{ENV_NAMES[self.env]}-{self.version}"

    @property
    def out_dir(self) -> Path:
        return Path(self.out).expanduser() if self.out else generated_data_dir() / "local"

    @property
    def run_dir(self) -> Path:
        """SAC checkpoint, replay buffer and snapshots of this env, version and seed."""
        return self.out_dir / "runs" / f"{self.env}-{self.version}-seed{self.seed}"

    def check(self) -> None:
        if self.env not in ENV_NAMES:
            raise UserInputError(f"--env must be one of {', '.join(ENV_NAMES)}, got {self.env!r}")
        if self.version not in VERSIONS:
            raise UserInputError(f"--version must be one of {', '.join(VERSIONS)}, got {self.version!r}")
        for name in ("steps", "snapshot_every", "checkpoint_every", "eval_episodes", "size"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.snapshot_every > self.steps:
            raise UserInputError(f"--snapshot_every {self.snapshot_every} is more than --steps {self.steps}")


@dataclass(frozen=True)
class Snapshot:
    step: int  # SAC steps taken when the actor was saved
    mean_return: float  # mean return of its deterministic evaluation episodes


def choose_medium(
    snapshots: list[Snapshot], score: ScoreReference, target: float | None = None
) -> tuple[Snapshot, float]:
    """The snapshot whose normalised score is closest to `target` (default: 1/3 of the best snapshot's,
    D4RL's medium level); ties go to the earliest. Returns the snapshot and the target used."""
    if not snapshots:
        raise UserInputError("no policy snapshots yet: run more SAC steps than --snapshot_every")
    ordered = sorted(snapshots, key=lambda snapshot: snapshot.step)
    scores = [score.normalise(snapshot.mean_return) for snapshot in ordered]
    if target is None:
        target = max(scores) / 3
    best = min(range(len(ordered)), key=lambda i: (abs(scores[i] - target), i))
    return ordered[best], target


def best_snapshot(snapshots: list[Snapshot]) -> Snapshot:
    """Highest mean return; ties go to the earliest."""
    return max(sorted(snapshots, key=lambda s: s.step), key=lambda s: s.mean_return)


# ---- environments -----------------------------------------------------------------------------------


class EpisodeSeeded(gym.Wrapper):
    """Resets episode k with seed + k, so the env's state depends only on the episode count and the actions."""

    def __init__(self, env: gym.Env, seed: int):
        super().__init__(env)
        self.base_seed = seed
        self.episodes = 0

    def reset(self, *, seed=None, options=None):
        self.episodes += 1
        return self.env.reset(seed=self.base_seed + self.episodes - 1, options=options)


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit:
    while not isinstance(env, gym.wrappers.TimeLimit):
        env = env.env
    return env


def _physics_state(env: gym.Env) -> np.ndarray:
    base = env.unwrapped
    state = np.empty(mujoco.mj_stateSize(base.model, mujoco.mjtState.mjSTATE_INTEGRATION))
    mujoco.mj_getState(base.model, base.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    return state


def _set_physics_state(env: gym.Env, state: np.ndarray) -> None:
    base = env.unwrapped
    mujoco.mj_setState(base.model, base.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(base.model, base.data)


# ---- policies ---------------------------------------------------------------------------------------


def _act(actor, obs: np.ndarray, action_space: gym.spaces.Box, generator: torch.Generator | None) -> np.ndarray:
    """SAC's squashed Gaussian: tanh(mean) when generator is None, else tanh(mean + std * noise)."""
    with torch.no_grad():
        mean, log_std, _ = actor.get_action_dist_params(torch.as_tensor(obs, dtype=torch.float32)[None])
        if generator is not None:
            mean = mean + log_std.exp() * torch.randn(mean.shape, generator=generator)
        squashed = torch.tanh(mean)[0].numpy().astype(np.float64)
    return from_unit_box(squashed, action_space)


def from_unit_box(actions: np.ndarray, action_space: gym.spaces.Box) -> np.ndarray:
    """SAC's actions in [-1, 1] mapped to the env's action range (SB3 stores them scaled)."""
    return action_space.low + 0.5 * (actions + 1.0) * (action_space.high - action_space.low)


def evaluate(actor, env_id: str, episodes: int, seed: int) -> float:
    """Mean return of `episodes` deterministic episodes."""
    env = gym.make(env_id)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(_act(actor, obs, env.action_space, None))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def rollouts(actor, env_id: str, size: int, seed: int) -> dict[str, np.ndarray]:
    """`size` rows of episodes laid end to end; actor None acts uniformly at random, else it samples
    SAC's own noise (as D4RL's medium and expert sets do). The last row is marked as a timeout."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rows = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")}
    episode, returns, total = 0, [], 0.0
    obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET)
    for _ in range(size):
        action = env.action_space.sample() if actor is None else _act(actor, obs, env.action_space, generator)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, terminated, truncated and not terminated, next_obs)):
            rows[key].append(value)
        total += float(reward)
        obs = next_obs
        if terminated or truncated:
            returns.append(total)
            episode, total = episode + 1, 0.0
            obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET + episode)
    env.close()
    data = {key: np.asarray(values) for key, values in rows.items()}
    data["timeouts"][-1] |= not data["terminals"][-1]
    data["episode_returns"] = np.asarray(returns)
    return data


def buffer_rows(buffer, rows: int, action_space: gym.spaces.Box) -> dict[str, np.ndarray]:
    """The first `rows` transitions of an SB3 replay buffer (one env, never wrapped around) in D4RL form."""
    dones, timeouts = buffer.dones[:rows, 0] > 0, buffer.timeouts[:rows, 0] > 0
    return {
        "observations": buffer.observations[:rows, 0],
        "actions": from_unit_box(buffer.actions[:rows, 0].astype(np.float64), action_space),
        "rewards": buffer.rewards[:rows, 0],
        "terminals": dones & ~timeouts,
        "timeouts": timeouts,
        "next_observations": buffer.next_observations[:rows, 0],
    }


# ---- SAC training with snapshots and checkpoints ------------------------------------------------------


def _sb3():
    try:
        import stable_baselines3
    except ImportError as err:
        raise UserInputError(
            "stable-baselines3 is not installed; pip install stable-baselines3 (needed only to collect datasets)"
        ) from err
    return stable_baselines3


def _make_vec_env(settings: Settings):
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    return DummyVecEnv([lambda: Monitor(EpisodeSeeded(gym.make(settings.env_id), settings.seed))])


CHECKPOINT_FIELDS = ("env", "version", "seed", "learning_starts", "snapshot_every")  # must match on resume
CHECKPOINT_FILES = ("sac.zip", "buffer.pkl", "rng_env.pkl")


class Collection:
    """One SAC run in `settings.run_dir`: train() continues from its last checkpoint, if any."""

    def __init__(self, settings: Settings):
        settings.check()
        self.sb3 = _sb3()
        self.settings = settings
        self.dir = settings.run_dir
        (self.dir / "snapshots").mkdir(parents=True, exist_ok=True)
        self.env = _make_vec_env(settings)
        self.seeded = self.env.envs[0].env  # the EpisodeSeeded wrapper
        self.snapshots: list[Snapshot] = []
        if (self.dir / "state.json").exists():
            self.model = self._resume()
        else:
            self.model = self.sb3.SAC(
                "MlpPolicy", self.env, buffer_size=settings.steps, learning_starts=settings.learning_starts,
                seed=settings.seed, device="cpu", verbose=0,
            )

    # -- checkpoints --

    def _checkpoint(self) -> None:
        model, inner = self.model, self.env.envs[0]
        state = {
            "settings": asdict(self.settings),
            "num_timesteps": model.num_timesteps,
            "episodes": self.seeded.episodes,
            "elapsed_steps": _time_limit(inner)._elapsed_steps,
            "snapshots": [asdict(snapshot) for snapshot in self.snapshots],
        }
        extras = {
            "physics": _physics_state(inner),
            "last_obs": model._last_obs,
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "action_space": model.action_space.np_random.bit_generator.state,
        }
        folder = self.dir / f"checkpoint_{model.num_timesteps}"
        folder.mkdir(exist_ok=True)
        model.save(folder / "sac.zip")
        model.save_replay_buffer(folder / "buffer.pkl")
        with open(folder / "rng_env.pkl", "wb") as file:
            pickle.dump(extras, file)
        state["checkpoint"] = folder.name
        _write_text(self.dir / "state.json", json.dumps(state, indent=1))  # from here on, resume reads `folder`
        for old in self.dir.glob("checkpoint_*"):
            if old != folder:
                shutil.rmtree(old)
        for name in CHECKPOINT_FILES:  # the last release kept them in the run directory itself
            (self.dir / name).unlink(missing_ok=True)

    def _resume(self):
        state = json.loads((self.dir / "state.json").read_text())
        for field in CHECKPOINT_FIELDS:
            if state["settings"][field] != getattr(self.settings, field):
                raise UserInputError(
                    f"{self.dir} holds a run with --{field} {state['settings'][field]}, not "
                    f"{getattr(self.settings, field)}; use the same value or another --out"
                )
        folder = self.dir / state.get("checkpoint", "")  # no entry: the last release's layout, files in the run dir
        with open(folder / "rng_env.pkl", "rb") as file:
            extras = pickle.load(file)
        model = self.sb3.SAC.load(folder / "sac.zip", env=self.env, device="cpu")
        model.load_replay_buffer(folder / "buffer.pkl")
        self._grow_buffer(model)
        self.seeded.episodes = state["episodes"] - 1  # reset() replays the current episode's seed ...
        self.env.reset()
        inner = self.env.envs[0]
        _set_physics_state(inner, extras["physics"])  # ... then the physics jumps to where it stopped
        _time_limit(inner)._elapsed_steps = state["elapsed_steps"]
        model._last_obs = extras["last_obs"]
        torch.set_rng_state(extras["torch"])
        np.random.set_state(extras["numpy"])
        random.setstate(extras["python"])
        model.action_space.np_random.bit_generator.state = extras["action_space"]
        self.snapshots = [Snapshot(**snapshot) for snapshot in state["snapshots"]]
        return model

    def _grow_buffer(self, model) -> None:
        """A resumed run may ask for more steps than the saved buffer holds."""
        old = model.replay_buffer
        if old.buffer_size >= self.settings.steps:
            return
        new = type(old)(self.settings.steps, old.observation_space, old.action_space, device="cpu",
                        handle_timeout_termination=True)
        rows = old.buffer_size if old.full else old.pos  # a buffer filled to its size has wrapped pos to 0
        for key in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
            getattr(new, key)[:rows] = getattr(old, key)[:rows]
        new.pos = rows
        model.replay_buffer = new

    # -- training --

    def train(self, progress: bool = True) -> None:
        settings, model = self.settings, self.model
        last = self.snapshots[-1].mean_return if self.snapshots else float("nan")
        bar = tqdm(total=settings.steps, initial=model.num_timesteps, desc=settings.env_id, disable=not progress,
                   unit="step", dynamic_ncols=True)
        bar.set_postfix(eval_return=f"{last:.1f}")
        callback = _progress_callback(bar)
        while model.num_timesteps < settings.steps:
            step = model.num_timesteps
            end = min(_next_multiple(step, settings.snapshot_every), _next_multiple(step, settings.checkpoint_every),
                      settings.steps)
            model.learn(end - step, reset_num_timesteps=False, callback=callback)
            if end % settings.snapshot_every == 0:
                self._snapshot(end)
                bar.set_postfix(eval_return=f"{self.snapshots[-1].mean_return:.1f}")
            if end % settings.checkpoint_every == 0 or end == settings.steps:
                self._checkpoint()
        bar.close()

    def _snapshot(self, step: int) -> None:
        settings = self.settings
        with written_atomically(self.dir / "snapshots" / f"step_{step}.pt") as partial:
            torch.save(self.model.actor.state_dict(), partial)
        mean_return = evaluate(self.model.actor, settings.env_id, settings.eval_episodes, settings.seed)
        self.snapshots.append(Snapshot(step, mean_return))
        _write_text(self.dir / "snapshots" / "returns.json",
                    json.dumps([asdict(snapshot) for snapshot in self.snapshots], indent=1))

    def actor_at(self, step: int):
        """A copy of the actor with the weights of the snapshot taken at `step`."""
        actor = self.sb3.SAC("MlpPolicy", self.env, buffer_size=1, device="cpu").actor
        actor.load_state_dict(torch.load(self.dir / "snapshots" / f"step_{step}.pt"))
        return actor

    # -- datasets --

    def write_datasets(self) -> dict[str, Path]:
        """The D4RL-format files this run supports; returns quality -> path."""
        settings, score = self.settings, local_score_reference(self.settings.env_id)
        medium, target = choose_medium(self.snapshots, score, settings.target)
        best = best_snapshot(self.snapshots)
        common = {"env_id": settings.env_id, "seed": settings.seed, "sac_steps": self.model.num_timesteps,
                  "score_source": LOCAL_SCORE_SOURCE, "target": target}
        buffer, action_space = self.model.replay_buffer, self.env.action_space
        rows = self.model.num_timesteps
        parts = {
            "random": (rollouts(None, settings.env_id, settings.size, settings.seed), {"policy_step": 0}),
            "medium": (rollouts(self.actor_at(medium.step), settings.env_id, settings.size, settings.seed),
                       {"policy_step": medium.step}),
            "medium-replay": (buffer_rows(buffer, medium.step, action_space), {"policy_step": medium.step}),
            "full-replay": (buffer_rows(buffer, rows, action_space), {"policy_step": rows}),
        }
        if score.normalise(best.mean_return) >= settings.expert_threshold:
            expert = rollouts(self.actor_at(best.step), settings.env_id, settings.size, settings.seed + 1)
            parts["expert"] = (expert, {"policy_step": best.step})
            both = {key: np.concatenate([parts["medium"][0][key], expert[key]]) for key in expert}
            parts["medium-expert"] = (both, {"policy_step": best.step, "medium_policy_step": medium.step})
        paths = {}
        for quality, (data, attrs) in parts.items():
            paths[quality] = settings.out_dir / f"{settings.env}-{quality}-{LOCAL_VERSION}.hdf5"
            write_hdf5(paths[quality], data, {**common, **attrs, "quality": quality}, score)
        return paths


def _progress_callback(bar: tqdm):
    """SB3 callback that moves a tqdm bar one step per environment step."""
    from stable_baselines3.common.callbacks import BaseCallback

    class ProgressBar(BaseCallback):
        def _on_step(self) -> bool:
            bar.update(1)
            return True

    return ProgressBar()


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def write_hdf5(path: Path, data: dict[str, np.ndarray], attrs: dict, score: ScoreReference) -> None:
    """D4RL keys as datasets, metadata as attributes (returns: of complete episodes), written atomically."""
    returns = data.get("episode_returns")
    if returns is None:  # replay data: episode returns from the rewards between episode ends
        sums = np.cumsum(data["rewards"], dtype=np.float64)
        returns = np.diff(np.r_[0.0, sums[np.flatnonzero(data["terminals"] | data["timeouts"])]])
    attrs = {**attrs, "episodes": len(returns), "mean_return": float(np.mean(returns)) if len(returns) else np.nan}
    attrs["normalised_score"] = score.normalise(attrs["mean_return"]) if len(returns) else np.nan
    with written_atomically(path) as partial, h5py.File(partial, "w") as file:
        file["observations"] = data["observations"].astype(np.float32)
        file["actions"] = data["actions"].astype(np.float32)
        file["rewards"] = data["rewards"].astype(np.float32)
        file["terminals"] = data["terminals"].astype(bool)
        file["timeouts"] = data["timeouts"].astype(bool)
        file["next_observations"] = data["next_observations"].astype(np.float32)
        for key, value in attrs.items():
            file.attrs[key] = value


def _write_text(path: Path, text: str) -> None:
    with written_atomically(path) as partial:
        partial.write_text(text)
