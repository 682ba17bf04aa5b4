"""Where a LoRa configuration puts the radio, computed the way the firmware does (pure: no library types).

Indonesia has no Meshtastic region (firmware issue #9782), so the radios run ``SG_923`` (917–925 MHz) with
the slot pinned inside Indonesia's 920–923 MHz band.  The centre frequency follows firmware
``RadioInterface::applyModemConfig``::

    slot_width = spacing + 2 * padding + bw_kHz / 1000          (MHz; spacing = padding = 0 on SG_923)
    slots      = round((freq_end - freq_start + spacing) / slot_width)
    slot       = channel_num - 1, or djb2(channel name) % slots when channel_num is 0
    centre     = freq_start + bw_kHz / 2000 + padding + slot * slot_width + frequency_offset
    (override_frequency, when set, replaces all of this)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from siaga.errors import ConfigError

REQUIRED_REGION = "SG_923"
#: Indonesia's LPWA band; the whole channel (centre ± bandwidth/2) must lie inside it.
BAND_LOW_MHZ = 920.0
BAND_HIGH_MHZ = 923.0
HOP_LIMIT_RANGE = (1, 7)
#: Name of the regency's private primary channel when the key comes from a file (≤ 11 bytes in firmware).
CHANNEL_NAME = "Siaga112"


@dataclass(frozen=True)
class Region:
    """One row of the firmware's region table (MHz)."""

    name: str
    freq_start: float
    freq_end: float
    spacing: float = 0.0
    padding: float = 0.0
    wide_lora: bool = False


# From RadioInterface.cpp `regions[]` (PROFILE_STD: no spacing, no padding).
REGIONS: Mapping[str, Region] = {
    r.name: r
    for r in (
        Region("US", 902.0, 928.0),
        Region("EU_433", 433.0, 434.0),
        Region("EU_868", 869.4, 869.65),
        Region("CN", 470.0, 510.0),
        Region("JP", 920.5, 923.5),
        Region("ANZ", 915.0, 928.0),
        Region("ANZ_433", 433.05, 434.79),
        Region("RU", 868.7, 869.2),
        Region("KR", 920.0, 923.0),
        Region("TW", 920.0, 925.0),
        Region("IN", 865.0, 867.0),
        Region("NZ_865", 864.0, 868.0),
        Region("TH", 920.0, 925.0),
        Region("UA_433", 433.0, 434.7),
        Region("UA_868", 868.0, 868.6),
        Region("MY_433", 433.0, 435.0),
        Region("MY_919", 919.0, 924.0),
        Region("SG_923", 917.0, 925.0),
        Region("PH_433", 433.0, 434.7),
        Region("PH_868", 868.0, 869.4),
        Region("PH_915", 915.0, 918.0),
        Region("KZ_433", 433.075, 434.775),
        Region("KZ_863", 863.0, 868.0),
        Region("NP_865", 865.0, 868.0),
        Region("BR_902", 902.0, 907.5),
        Region("LORA_24", 2400.0, 2483.5, wide_lora=True),
        Region("UNSET", 902.0, 928.0),
    )
}

# MeshRadio.h modemPresetToParams: bandwidth in kHz (narrow radios, wide LoRa 2.4 GHz radios).
_PRESET_BW_KHZ: Mapping[str, tuple[float, float]] = {
    "SHORT_TURBO": (500.0, 1625.0),
    "SHORT_FAST": (250.0, 812.5),
    "SHORT_SLOW": (250.0, 812.5),
    "MEDIUM_FAST": (250.0, 812.5),
    "MEDIUM_SLOW": (250.0, 812.5),
    "LONG_TURBO": (500.0, 1625.0),
    "LONG_MODERATE": (125.0, 406.25),
    "LONG_SLOW": (125.0, 406.25),
    "LONG_FAST": (250.0, 812.5),
}
# DisplayFormatters::getModemPresetDisplayName: the slot hash uses this name when the channel has none.
_PRESET_DISPLAY_NAME = {
    "SHORT_TURBO": "ShortTurbo",
    "SHORT_FAST": "ShortFast",
    "SHORT_SLOW": "ShortSlow",
    "MEDIUM_FAST": "MediumFast",
    "MEDIUM_SLOW": "MediumSlow",
    "LONG_TURBO": "LongTurbo",
    "LONG_MODERATE": "LongMod",
    "LONG_SLOW": "LongSlow",
    "LONG_FAST": "LongFast",
}
# MeshRadio.h bwCodeToKHz: codes for the bandwidths that are not whole kHz.
_BW_CODES = {31: 31.25, 62: 62.5, 200: 203.125, 400: 406.25, 800: 812.5, 1600: 1625.0}


@dataclass(frozen=True)
class Lora:
    """The ``config.lora`` values the frequency depends on (enums by name, proto3 defaults when unset)."""

    region: str = "UNSET"
    use_preset: bool = False
    modem_preset: str = "LONG_FAST"
    bandwidth: int = 0
    channel_num: int = 0
    override_frequency: float = 0.0
    frequency_offset: float = 0.0
    hop_limit: int = 0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Lora:
        """From a ``config.lora`` section as :mod:`firmware_config.radio` renders it (unknown keys ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in values.items() if k in names})


def djb2(text: str) -> int:
    """The firmware's ``hash()`` (djb2, 32-bit) used to pick the default frequency slot."""
    value = 5381
    for byte in text.encode("utf-8"):
        value = (value * 33 + byte) & 0xFFFFFFFF
    return value


@dataclass(frozen=True)
class Frequency:
    """Where a LoRa config puts the radio."""

    region: str
    centre_mhz: float
    bandwidth_khz: float
    slot: int | None  # 1-based slot (channel_num) actually used; None with override_frequency
    slots: int
    pinned: bool  # False when the slot comes from the channel-name hash (channel_num 0)

    @property
    def low_mhz(self) -> float:
        return self.centre_mhz - self.bandwidth_khz / 2000

    @property
    def high_mhz(self) -> float:
        return self.centre_mhz + self.bandwidth_khz / 2000

    def inside(self, low: float = BAND_LOW_MHZ, high: float = BAND_HIGH_MHZ) -> bool:
        # round() absorbs float noise such as 919.9999999 for an edge that is exactly 920.
        return round(self.low_mhz, 6) >= low and round(self.high_mhz, 6) <= high


def channel_bandwidth_khz(lora: Lora, wide_lora: bool = False) -> float:
    """Bandwidth the firmware uses: the preset's, or the custom ``bandwidth`` code when use_preset is off."""
    if lora.use_preset:
        narrow, wide = _PRESET_BW_KHZ.get(lora.modem_preset, _PRESET_BW_KHZ["LONG_FAST"])
        return wide if wide_lora else narrow
    return _BW_CODES.get(lora.bandwidth, float(lora.bandwidth))


def radio_frequency(lora: Lora, channel_name: str = CHANNEL_NAME) -> Frequency:
    """Centre frequency the firmware would tune to; raises ConfigError for an unknown region or bandwidth."""
    region = REGIONS.get(lora.region)
    if region is None:
        raise ConfigError("config.lora.region", lora.region, "is not in the firmware region table we know")
    bw = channel_bandwidth_khz(lora, region.wide_lora)
    if bw <= 0:
        raise ConfigError("config.lora.bandwidth", lora.bandwidth, "must be set when use_preset is false")
    slot_width = region.spacing + 2 * region.padding + bw / 1000
    slots = round((region.freq_end - region.freq_start + region.spacing) / slot_width)
    if lora.override_frequency:
        centre = lora.override_frequency + lora.frequency_offset
        return Frequency(region.name, centre, bw, None, slots, True)
    if lora.channel_num > slots:
        raise ConfigError("config.lora.channel_num", lora.channel_num, f"exceeds the {slots} slots of {region.name}")
    hash_name = channel_name or (_PRESET_DISPLAY_NAME.get(lora.modem_preset, "Custom") if lora.use_preset else "Custom")
    if lora.channel_num == 0:
        slot0, pinned = djb2(hash_name) % slots, False
    else:
        slot0, pinned = lora.channel_num - 1, True
    centre = region.freq_start + bw / 2000 + region.padding + slot0 * slot_width + lora.frequency_offset
    return Frequency(region.name, centre, bw, slot0 + 1, slots, pinned)
