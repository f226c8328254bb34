"""Query packs: load `queries/*.sql` and render them for osquery, Fleet and Kolide."""

from rarenet.baseline.packs.build import BuildReport, build
from rarenet.baseline.packs.queries import Query, load_queries
from rarenet.baseline.packs.render import PACK_NAME, render_all

__all__ = ["PACK_NAME", "BuildReport", "Query", "build", "load_queries", "render_all"]
