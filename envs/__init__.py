"""Tasks we ship, registered with gymnasium on import."""

import gymnasium as gym

TOY_ENV_ID = "ToyMultimodal-v0"
FETCH_REACH_FOUR_GOAL_ID = "FetchReachFourGoal-v0"

if TOY_ENV_ID not in gym.registry:
    gym.register(id=TOY_ENV_ID, entry_point="envs.toy_multimodal:ToyMultimodalEnv", max_episode_steps=1)
if FETCH_REACH_FOUR_GOAL_ID not in gym.registry:
    gym.register(id=FETCH_REACH_FOUR_GOAL_ID, entry_point="envs.fetch_fourgoal:FetchReachFourGoalEnv",
                 max_episode_steps=50)
