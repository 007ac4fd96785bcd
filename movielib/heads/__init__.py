"""Downstream heads on the catalog's feature tables (DESIGN §5): models, metrics, data, one-head training and
Ray Tune sweeps.

    models.py   M_scene, M_trailer, a linear probe, Movies2Scenes' 2-hidden-layer MLP; built by name
    metrics.py  mAP, AU-PRC, weighted P/R/F1, top-1, MSE, per-sample Pearson (scikit-learn underneath)
    data.py     training sets from the tables (clean-tag recipe, or a labels file), split by video
    train.py    one head trained on arrays, reporting every epoch (inside a Tune trial or alone)
    sweep.py    `movielib tune heads` / `movielib train head`: Tuner + ASHA, results, export of the best
"""

from movielib import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "load_head": "movielib.heads.train",
        "predict": "movielib.heads.train",
        "export_bytes": "movielib.heads.train",
        "build_head": "movielib.heads.models",
        "evaluate": "movielib.metrics",
        "HeadsConfig": "movielib.heads.config",
    },
)
