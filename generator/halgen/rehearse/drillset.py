"""Every loopback drill, in the order they run: the app, Redis and replica drills, the
manual PostgreSQL failover, then those of the automatic one (each skips what its stack
does not have)."""

from __future__ import annotations

from halgen.rehearse.drills import BASE_DRILLS, Drill
from halgen.rehearse.patronidrills import PATRONI_DRILLS

DRILLS: dict[str, Drill] = {**BASE_DRILLS, **PATRONI_DRILLS}
