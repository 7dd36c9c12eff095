"""Tasks we ship, registered with gymnasium on import."""

import warnings

import gymnasium as gym

from envs.fetch_fourgoal import EPISODE_STEPS as FETCH_EPISODE_STEPS

TOY_ENV_ID = "ToyMultimodal-v0"
FETCH_REACH_FOUR_GOAL_ID = "FetchReachFourGoal-v0"
FETCH_PUSH_FOUR_GOAL_ID = "FetchPushFourGoal-v0"
FETCH_PICK_FOUR_GOAL_ID = "FetchPickFourGoal-v0"
# The four-goal Fetch tasks by their name in envs.fetch_fourgoal.TASKS (a string here, so importing envs
# needs no gymnasium-robotics).
FETCH_FOUR_GOAL_IDS = {"reach": FETCH_REACH_FOUR_GOAL_ID, "push": FETCH_PUSH_FOUR_GOAL_ID,
                       "pick": FETCH_PICK_FOUR_GOAL_ID}

if TOY_ENV_ID not in gym.registry:
    gym.register(id=TOY_ENV_ID, entry_point="envs.toy_multimodal:ToyMultimodalEnv", max_episode_steps=1)
for _task, _env_id in FETCH_FOUR_GOAL_IDS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point="envs.fetch_fourgoal:FetchFourGoalEnv", kwargs={"task": _task},
                     max_episode_steps=FETCH_EPISODE_STEPS)

# D4RL's v2 data needs the v4 MuJoCo models (v5 changed them), so the v4 envs are chosen on purpose:
# gymnasium's advice to upgrade them would only push every one-line error off its one line.
warnings.filterwarnings("ignore", message=r".*The environment \w+-v4 is out of date", category=DeprecationWarning)


def import_simulator() -> None:
    """MuJoCo and gymnasium's MuJoCo renderer, imported ahead of the first env. Their import initialises
    compiled modules and, for GLFW, starts helper processes that read a line from a pipe. A signal handler
    that raises in the middle turns into "ImportError: initialization failed" and leaves a helper printing
    its own traceback, so `train.py` imports them here, in a block that a stop waits for."""
    import gymnasium.envs.mujoco.mujoco_rendering  # noqa: F401
