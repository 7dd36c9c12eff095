"""The agent registry: name -> class. A new algorithm is one new file plus one line here."""

from agents.atac import ATAC
from agents.awac import AWAC
from agents.base import Agent
from agents.bc import BC
from agents.cql import CQL
from agents.dmpo import DMPO
from agents.iql import IQL
from agents.lapo import LAPO
from agents.lom import LOM
from agents.mahalo import MAHALO
from agents.mahalo_baselines import (BCO, UDS, ActionPrediction, ActionRewardPrediction, Oracle, RewardPrediction,
                                     RewardSetBC,
                                     UDSWithoutOverlap)
from agents.mdn import MDN
from agents.mixawac import MixAWAC
from agents.onestep import OneStep
from agents.td3bc import TD3BC
from agents.wcgan import WCGAN
from agents.wcvae import WCVAE

AGENTS: dict[str, type[Agent]] = {"lom": LOM, "bc": BC, "mdn": MDN, "awac": AWAC, "td3bc": TD3BC, "iql": IQL,
                                  "cql": CQL, "onestep": OneStep, "lapo": LAPO, "dmpo": DMPO, "mixawac": MixAWAC,
                                  "wcgan": WCGAN, "wcvae": WCVAE, "mahalo": MAHALO, "atac": ATAC,
                                  "rp": RewardPrediction, "ap": ActionPrediction, "arp": ActionRewardPrediction,
                                  "uds": UDS, "uds_a": UDSWithoutOverlap, "oracle": Oracle, "bco": BCO,
                                  "bc_reward_set": RewardSetBC}
