"""Structure search: the run store, proxy tasks and the search loop.

Importing this package does not import torch; the proxy tasks live in
:mod:`search.tasks`, which does.
"""

from search.store import (
    LABEL_KEYS,
    POINT_FIELDS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    Claim,
    RunStore,
    canonical_config,
    run_id,
)

__all__ = [
    "LABEL_KEYS",
    "POINT_FIELDS",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "Claim",
    "RunStore",
    "canonical_config",
    "run_id",
]
