"""The agent registry: name -> class. A new algorithm is one new file plus one line here."""

from agents.base import Agent
from agents.bc import BC
from agents.lom import LOM

AGENTS: dict[str, type[Agent]] = {"lom": LOM, "bc": BC}
