"""What a worker reports about its disk: the model files model_sync placed and verified
(its state records, comfy_jobs reads them and never writes), each still there at the size
it was verified at."""

from __future__ import annotations

from pathlib import Path

from model_sync.state import StateStore, local_stat


def placed_models(models_dir: Path) -> list[str]:
    """`folder/path` of every file model_sync placed under `models_dir`, sorted."""
    store = StateStore(models_dir / ".model_sync")
    out = []
    for dest in store.all_dests():
        rec = store.get(dest)
        st = local_stat(models_dir / dest)
        if rec is not None and st is not None and st.size == rec.size:
            out.append(dest)
    return sorted(out)
