"""Where a report enters the system: typed-in text or a radio packet's fields → a classified Report.

Both the operator's ``siaga report`` and the radio bridge build reports here, so that classification,
location fallback and time stamping follow one rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from edge.classify import Classifier
from siaga.clock import Clock
from siaga.config import Config, HandsetConfig
from siaga.errors import ReportError
from siaga.report import Callback, InvalidReport, PathHop, Report, check_text, new_report_id


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float
    source: str
    accuracy_m: float | None = None
    age_s: int | None = None


class Intake:
    """Builds reports for one post: its identity, its location, its classifier and its clock."""

    def __init__(self, config: Config, classifier: Classifier, clock: Clock) -> None:
        self._config = config
        self._classifier = classifier
        self._clock = clock
        self._handsets = {h.id: h for h in config.handsets}

    def suggest(self, text: str) -> str:
        """The category the classifier gives ``text`` (the console's suggestion while the officer types)."""
        return self._classifier.classify(text).category

    def handset(self, node: str) -> HandsetConfig | None:
        return self._handsets.get(node)

    def build(
        self,
        text: str,
        *,
        origin: str,
        source: str,
        report_id: str | None = None,
        location: Location | None = None,
        path: Sequence[PathHop] = (),
        mesh_packet_id: int | None = None,
        channel: int | None = None,
        observed_at: datetime | None = None,
    ) -> Report:
        """A validated report; raises :class:`ReportError` naming what is wrong."""
        try:
            check_text(text)
        except InvalidReport as exc:
            raise ReportError(str(exc)) from None
        now = self._clock.now()
        node = self._config.node
        if location is None and node.lat is not None and node.lon is not None:
            # the post's own position: the report came from somewhere within radio range of it
            location = Location(node.lat, node.lon, "post", accuracy_m=10_000.0)
        result = self._classifier.classify(text)
        handset = self._handsets.get(origin)
        callback = None
        if handset is not None:
            callback = Callback(
                handset=handset.id,
                officer=handset.officer or None,
                village=handset.village or None,
                phone=handset.phone or None,
            )
        try:
            return Report(
                report_id=report_id or new_report_id(),
                post_id=node.post_id,
                origin=origin,
                source=source,
                text_raw=text,
                observed_at=observed_at or now,
                stored_at=now,
                clock_source=self._clock.source(),
                category=result.category,
                event=result.event,
                urgency=result.urgency,
                severity=result.severity,
                certainty=result.certainty,
                casualties=result.casualties,
                lat=location.lat if location else None,
                lon=location.lon if location else None,
                accuracy_m=location.accuracy_m if location else None,
                loc_source=location.source if location else "none",
                loc_age_s=location.age_s if location else None,
                area_desc=handset.village or None if handset else None,
                area_code=handset.area_code or None if handset else None,
                path=tuple(path),
                verified=handset is not None,
                mode=node.mode,
                callback=callback,
                mesh_packet_id=mesh_packet_id,
                channel=channel,
            ).validate()
        except InvalidReport as exc:
            raise ReportError(str(exc)) from None
