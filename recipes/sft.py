"""Supervised fine-tuning: the GRPO starting policy.

    python -m recipes.sft                                   # tiny, from scratch, on the chain problems
    python -m recipes.sft model=smollm2_135m_instruct data=jsonl data.train.0.path=my.jsonl

Reads top to bottom: refuse to clobber a finished run, load the model, read and tokenise the data mix,
train with TRL's SFTTrainer, and write `final/` (model and tokenizer) and `sft_result.json`.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from grpo.fim import FimConfig
from grpo.models import load_model
from grpo.sft import RESULT_FILE, DataConfig, SFTResult, prepare_data, sft_config, train_sft
from grpo.sft_data import SFTDataError, Source, read_rows
from recipes.common import check_fresh_output
from recipes.config import recipe_main

SOURCE_KEYS = {f.name for f in fields(Source)} | {"path", "split"}


def build_source(spec: DictConfig) -> Source:
    """A `Source` from its config: rows from `path` (JSONL, saved dataset, HF name) or a `rows._target_`."""
    spec_dict: dict[str, Any] = OmegaConf.to_container(spec, resolve=True)  # type: ignore[assignment]
    name = spec_dict.get("name", "?")
    for key in spec_dict:
        if key not in SOURCE_KEYS:
            close = difflib.get_close_matches(key, SOURCE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise SFTDataError(f"data source {name!r}: unknown key {key!r}{hint}")
    if ("path" in spec_dict) == ("rows" in spec_dict):
        raise SFTDataError(f"data source {name!r} needs exactly one of `path` and `rows` (a _target_)")
    split = spec_dict.pop("split", "train")
    if "path" in spec_dict:
        path = spec_dict.pop("path")
        if path in (None, "", "???"):
            raise SFTDataError(
                f"data source {name!r}: path is not set (a JSONL file, a saved dataset or a name)"
            )
        rows = read_rows(path, split)
    else:
        rows = instantiate(spec.rows)
        spec_dict.pop("rows")
    return Source(rows=rows, **spec_dict)


def data_config(cfg: DictConfig, seed: int) -> DataConfig:
    fim = FimConfig(**cfg.fim) if cfg.get("fim") else None
    return DataConfig(
        template=cfg.template,
        max_length=cfg.max_length,
        overlong=cfg.overlong,
        eval_fraction=cfg.eval_fraction,
        fim=fim,
        seed=seed,
    )


def run(cfg: DictConfig) -> SFTResult:
    out = Path(cfg.output_dir)
    check_fresh_output(out, RESULT_FILE, resume=cfg.resume, overwrite=cfg.overwrite, what="SFT")
    if not cfg.data.get("train"):
        raise SFTDataError("data.train is empty: this data option has no SFT rows (it is an evaluation set)")
    train = [build_source(s) for s in cfg.data.train]  # bad data fails before the model loads
    evals = [build_source(s) for s in cfg.data.get("eval") or []]
    model, tokenizer = load_model(cfg.model.name)
    data = prepare_data(model, tokenizer, train, evals, data_config(cfg.data, cfg.trainer.get("seed", 0)))
    print(f"sft data: {data.stats.line()}", file=sys.stderr)
    trainer_args: dict[str, Any] = OmegaConf.to_container(cfg.trainer, resolve=True)  # type: ignore[assignment]
    args = sft_config(out, cfg.data.max_length, data.eval is not None, trainer_args)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    return train_sft(model, tokenizer, data, args, resume=cfg.resume, max_seconds=cfg.get("max_seconds"))


@recipe_main("sft")
def main(cfg: DictConfig) -> None:
    try:
        result = run(cfg)
    except SFTDataError as e:
        raise SystemExit(f"error: {e}") from None
    before = "n/a" if result.eval_loss_before is None else f"{result.eval_loss_before:.3f}"
    after = "n/a" if result.eval_loss_after is None else f"{result.eval_loss_after:.3f}"
    print(
        f"sft: {result.steps} steps in {result.seconds:.0f}s; held-out loss {before} -> {after}; "
        f"model: {result.model_dir}"
    )


if __name__ == "__main__":
    main()
