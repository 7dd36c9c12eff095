"""D4RL's MuJoCo tasks: the gymnasium env that evaluates each one's data, and D4RL's reference returns that
turn a return into a normalised score. Used to read D4RL files and to score data collected here."""

import dataclasses
import re
from typing import NamedTuple

from utils.dataset import ScoreReference

LOCAL_VERSION = "v0"  # locally collected sets are named local/<env>-<quality>-v0
LOCAL_SCORE_SOURCE = "D4RL reference returns"  # locally collected sets are scored with D4RL's constants, labelled so


class D4RLTask(NamedTuple):
    eval_env_id: str
    eval_env_kwargs: dict
    score: ScoreReference


# The v2 data came from gym's v3 MuJoCo envs; gymnasium's v4 envs share their models and observation layout.
# gym's v3 Ant observed contact forces (111 dims); gymnasium's Ant-v4 does so only when asked.
D4RL_TASKS = {
    "halfcheetah": D4RLTask("HalfCheetah-v4", {}, ScoreReference(-280.178953, 12135.0, "D4RL")),
    "hopper": D4RLTask("Hopper-v4", {}, ScoreReference(-20.272305, 3234.3, "D4RL")),
    "walker2d": D4RLTask("Walker2d-v4", {}, ScoreReference(1.629008, 4592.3, "D4RL")),
    "ant": D4RLTask("Ant-v4", {"use_contact_forces": True}, ScoreReference(-325.6, 3879.7, "D4RL")),
}


def d4rl_score_for_env(env_id: str) -> ScoreReference | None:
    """D4RL's reference scores when the env is one of D4RL's MuJoCo tasks (any version, module: prefix allowed)."""
    match = re.fullmatch(r"(?:.*:)?(?:.*/)?([A-Za-z0-9]+)-v\d+", env_id)
    task = D4RL_TASKS.get(match.group(1).lower()) if match else None
    return task.score if task else None


def local_score_reference(env_id: str) -> ScoreReference | None:
    """D4RL's reference returns for data collected here on one of D4RL's tasks, labelled as such."""
    score = d4rl_score_for_env(env_id)
    return None if score is None else dataclasses.replace(score, source=LOCAL_SCORE_SOURCE)
