"""The catalog's store: every table a tagging run writes under DEST, as Delta Lake tables (delta-rs).

    schema.py   Arrow schemas of the tables (videos, shots, tags, keyframes, features/<modality>)
    delta.py    delta-rs storage options, idempotent appends, deletes, optimize / vacuum
    store.py    CatalogStore: whole-video commits, the readers every job uses, run bookkeeping
    claims.py   which run works on which video (a Delta table of leases)

Jobs read the catalog through CatalogStore's readers (`read_table`, `read_shots`, `dataset`,
`dataset_of_shots`, `feature_model`) and the schemas here; nothing else reaches into the tables.
"""

from movielib.store.schema import FEATURES, SHOT_TABLES, SHOTS, TAGS, VIDEOS, FeatureSpec, table_schema
from movielib.store.store import SHOT_KEYS, CatalogStore, new_run_id, not_null, video_in

__all__ = [
    "FEATURES",
    "SHOTS",
    "SHOT_KEYS",
    "SHOT_TABLES",
    "TAGS",
    "VIDEOS",
    "CatalogStore",
    "FeatureSpec",
    "new_run_id",
    "not_null",
    "video_in",
    "table_schema",
]
