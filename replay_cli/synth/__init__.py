"""Writer of valid synthetic StarCraft II replays (build 5.0.15.95299).

``write_replay(description)`` returns the bytes of a ``.SC2Replay`` file that
sc2reader parses (load levels 2-4) back into exactly the described values.
"""

from __future__ import annotations

from replay_cli.synth.catalogue import (
    describe_game,
    generate_descriptions,
    write_corpus,
    write_samples,
)
from replay_cli.synth.game import write_replay
from replay_cli.synth.model import (
    BuildItem,
    ChatLine,
    GameDescription,
    ObserverDescription,
    PlayerDescription,
    StatsSample,
)

__all__ = [
    "BuildItem",
    "ChatLine",
    "GameDescription",
    "ObserverDescription",
    "PlayerDescription",
    "StatsSample",
    "describe_game",
    "generate_descriptions",
    "write_corpus",
    "write_replay",
    "write_samples",
]
