"""The agent registry: name -> class. A new algorithm is one new file plus one line here."""

from agents.awac import AWAC
from agents.base import Agent
from agents.bc import BC
from agents.lom import LOM
from agents.mdn import MDN

AGENTS: dict[str, type[Agent]] = {"lom": LOM, "bc": BC, "mdn": MDN, "awac": AWAC}
