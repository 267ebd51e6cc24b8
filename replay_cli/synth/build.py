"""Constants of the one SC2 build the synthetic replays claim to be.

We encode for exactly 5.0.15.95299: sc2reader 1.9.0 reads it with its
newest readers (game events 80669+, LotV datapack 96883) and s2protocol ships
``protocol95299``.
"""

from __future__ import annotations

import hashlib

RELEASE = (5, 0, 15)
BASE_BUILD = 95299
BUILD = 95299
RELEASE_STRING = "5.0.15.95299"
VERSION_FLAGS = 1
REPLAY_SIGNATURE = b"StarCraft II replay\x1b11"
REPLAY_HEADER_TYPE = 2
# The "DataVersion" of this build (the NGDP root key in the replay header).
DATA_VERSION = bytes.fromhex("EF9BBA0959BD280845A38EFEDE6E4D27")

GAME_LOOPS_PER_SECOND = 22.4  # "Faster" speed in LotV
GAME_SPEED_FASTER = 4
DEFAULT_DIFFICULTY = 3
WINDOWS_EPOCH_OFFSET_SECONDS = 11644473600  # 1601-01-01 to 1970-01-01
WINDOWS_TICKS_PER_SECOND = 10**7
TICKS_PER_HOUR = WINDOWS_TICKS_PER_SECOND * 3600

# replay.details control / result codes.
CONTROL_HUMAN = 2
CONTROL_COMPUTER = 3
RESULT_CODES = {"Undecided": 0, "Win": 1, "Loss": 2, "Tie": 3}
OBSERVE_NONE = 0
OBSERVE_SPECTATOR = 1

# Battle.net region id -> the gateway code cache handles are served from.
REGION_GATEWAYS = {0: b"US", 1: b"US", 2: b"EU", 3: b"KR", 5: b"CN", 6: b"SG", 98: b"XX"}
PROGRAM_ID = b"S2\x00\x00"
NO_PROGRAM_ID = b"\x00\x00\x00\x00"

# Colour name -> (attribute code, RGB) as the lobby and replay.details use.
COLORS = {
    "Red": ("tc01", (0xB4, 0x14, 0x1E)),
    "Blue": ("tc02", (0x00, 0x42, 0xFF)),
    "Teal": ("tc03", (0x1C, 0xA7, 0xEA)),
    "Purple": ("tc04", (0x54, 0x00, 0x81)),
    "Yellow": ("tc05", (0xEB, 0xE1, 0x29)),
    "Orange": ("tc06", (0xFE, 0x8A, 0x0E)),
    "Green": ("tc07", (0x16, 0x80, 0x00)),
    "Light Pink": ("tc08", (0xCC, 0xA6, 0xFC)),
    "Violet": ("tc09", (0x1F, 0x01, 0xC9)),
    "Light Grey": ("tc10", (0x52, 0x54, 0x94)),
    "Dark Green": ("tc11", (0x10, 0x62, 0x46)),
    "Brown": ("tc12", (0x4E, 0x2A, 0x04)),
}
OPAQUE_ALPHA = 255

# Race -> lobby attribute code; gamemetadata.json uses the same 4 letters.
RACE_CODES = {"Terran": "Terr", "Protoss": "Prot", "Zerg": "Zerg"}

# AI difficulty name (sc2reader's) -> (lobby attribute code, slot difficulty).
DIFFICULTIES = {
    "Very Easy": ("VyEy", 1),
    "Easy": ("Easy", 2),
    "Medium": ("Medi", 3),
    "Hard": ("MdHd", 4),
    "Harder": ("Hard", 5),
    "Very Hard": ("HdVH", 6),
    "Elite": ("VyHd", 7),
    "Cheater 1 (Vision)": ("ChVi", 8),
    "Cheater 2 (Resources)": ("ChRe", 9),
    "Insane": ("Insa", 10),
}
GAME_MODE_CODES = {"Ladder": "Amm", "Private": "Priv", "Public": "Pub"}


def depot_hash(label: str) -> bytes:
    """The 32-byte content hash sc2reader compares dependency handles with."""
    return hashlib.sha256(label.encode("utf-8")).digest()


# Dependencies every melee map has; sc2reader detects LotV from the last one.
STANDARD_DEPENDENCIES = (
    "Standard Data: Core.SC2Mod",
    "Standard Data: Liberty.SC2Mod",
    "Standard Data: Swarm.SC2Mod",
    "Standard Data: Void.SC2Mod",
)
