"""A loopback server that speaks the Overpass API, for `noldo build --split osm` without an OSM file.

``GET <url>/status`` answers the rate-limit status page; ``POST <url>/interpreter`` (form field
``data``, an ``[out:json]`` query with a ``poly:`` filter) answers every element of a real OSM
extract as Overpass JSON. Point noldo at it with ``NOLDO_OVERPASS_URL=fake.url``.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import osmium

from noldo.testing.loopback import LoopbackServer, QuietHandler


class FakeOverpass(LoopbackServer):
    """A loopback Overpass API answering /status and /interpreter with the elements of a real extract.

    ``with FakeOverpass("kotka.osm") as overpass: ... overpass.url ... overpass.requests ...``.
    """

    def __init__(self, extract: str | Path) -> None:
        self.requests = 0
        self.elements = self._elements(extract)
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/status"):
                    self.send_body(200, "Connected as: 1\nCurrent time: 2026-12-01T00:00:00Z\nAnnounced endpoint: "
                                   "none\nRate limit: 2\n2 slots available now.\n", "text/plain")

            def do_POST(self) -> None:
                query = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())["data"][0]
                assert "[out:json]" in query and "poly:" in query
                fake.requests += 1
                self.send_body(200, json.dumps({"version": 0.6, "elements": fake.elements}), "application/json")

        super().__init__(Handler, "/api")

    @staticmethod
    def _elements(extract: str | Path) -> list[dict[str, Any]]:
        elements = []
        for obj in osmium.FileProcessor(str(extract)):
            tags = {t.k: t.v for t in obj.tags}
            if obj.is_node():
                elements.append({"type": "node", "id": obj.id, "lat": obj.location.lat, "lon": obj.location.lon,
                                 **({"tags": tags} if tags else {})})
            elif obj.is_way():
                elements.append({"type": "way", "id": obj.id, "nodes": [n.ref for n in obj.nodes], "tags": tags})
            else:
                elements.append({"type": "relation", "id": obj.id, "tags": tags, "members": [
                    {"type": {"n": "node", "w": "way", "r": "relation"}[m.type], "ref": m.ref, "role": m.role}
                    for m in obj.members]})
        return elements
