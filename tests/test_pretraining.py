"""MDN pretraining until convergence: the held-out split, early stopping, the cache round trip and its key."""

import json
from pathlib import Path

import torch

import envs  # noqa: F401
from agents.lom import HELD_OUT_MAX_ROWS, LOM, LOMSettings
from trainer.config import parse_config
from trainer.pretraining import pretrain_key, pretrain_until_converged
from utils.buffer import Buffer
from datasources import load_dataset
from utils.logger import RunLogger
from utils.pretrain_cache import cache_file, load_pretrained, save_pretrained


def toy_buffer(size: int = 2000) -> Buffer:
    return Buffer(load_dataset("toy-multimodal", toy_size=size, seed=0), torch.device("cpu"), normalise=True)


def small_lom(**overrides) -> LOM:
    torch.manual_seed(0)
    settings = LOMSettings(**{"num_mixtures": 4, "mdn_hidden": 16, "hidden": 16, "gmm_batch_size": 64,
                              "gmm_steps": 1000, "gmm_check_every": 10, "gmm_patience": 3, **overrides})
    return LOM(1, 2, settings, discount=0.99)


def test_held_out_rows_are_a_disjoint_capped_share_of_the_data():
    buffer = toy_buffer(2000)
    kept, held_out = buffer.split_rows(0.05, max_held_out=HELD_OUT_MAX_ROWS)
    assert len(held_out) == 100 and len(kept) == 1900
    assert sorted(torch.cat([kept, held_out]).tolist()) == list(range(2000))
    kept, held_out = buffer.split_rows(0.5, max_held_out=30)
    assert len(held_out) == 30 and len(kept) == 1970


def test_pretraining_never_draws_held_out_rows():
    buffer = toy_buffer()
    agent = small_lom()
    agent.start_pretraining(buffer)
    held_out = set(agent.held_out_rows.tolist())
    torch.manual_seed(1)
    drawn = torch.cat([buffer.sample_among(agent.mdn_rows, 512) for _ in range(20)])
    assert held_out and not held_out & set(drawn.tolist())


def test_held_out_loss_is_the_mean_nll_of_the_held_out_rows():
    buffer = toy_buffer()
    agent = small_lom()
    agent.start_pretraining(buffer)
    rows = agent.held_out_rows
    expected = agent.behaviour_mdn.nll(buffer.observations[rows], buffer.actions[rows])
    torch.testing.assert_close(agent.held_out_loss(buffer), expected)


def test_early_stopping_stops_after_patience_checks_without_improvement(tmp_path):
    buffer = toy_buffer()
    agent = small_lom(gmm_lr=0.0)  # nothing improves: the first check stays the best
    logger = RunLogger(tmp_path, {})
    record = pretrain_until_converged(agent, buffer, logger)
    logger.close()
    # checks at steps 10, 20, 30, 40: the first sets the best, three more without improvement end it
    assert record["steps"] == 10 * (1 + 3) and record["best_step"] == 10
    rows = [json.loads(line) for line in (tmp_path / "pretraining.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [10, 20, 30, 40]
    assert record["held_out_loss"] == rows[0]["held_out_loss"]


def test_early_stopping_keeps_the_modules_of_the_best_check(tmp_path):
    buffer = toy_buffer()
    agent = small_lom(gmm_lr=3e-3, gmm_steps=300, gmm_check_every=20, gmm_patience=2)
    logger = RunLogger(tmp_path, {})
    record = pretrain_until_converged(agent, buffer, logger)
    logger.close()
    assert 20 <= record["best_step"] <= record["steps"] <= 300
    torch.testing.assert_close(agent.held_out_loss(buffer), torch.tensor(record["held_out_loss"]))


def test_no_held_out_share_trains_every_step(tmp_path):
    buffer = toy_buffer()
    agent = small_lom(gmm_holdout=0.0, gmm_steps=35, gmm_lr=0.0)
    logger = RunLogger(tmp_path, {})
    record = pretrain_until_converged(agent, buffer, logger)
    logger.close()
    assert record == {"steps": 35, "best_step": 35, "held_out_loss": None}


def test_cache_round_trip_restores_modules_and_record(tmp_path):
    buffer = toy_buffer()
    trained, fresh = small_lom(), small_lom()
    trained.start_pretraining(buffer)
    for _ in range(5):
        trained.pretrain_step(buffer)
    path = Path(tmp_path) / "mdn.pt"
    save_pretrained(trained.pretrained_modules(), path, {"steps": 5, "best_step": 5, "held_out_loss": 1.5})
    assert [p.name for p in tmp_path.iterdir()] == ["mdn.pt"]  # no temporary file left behind
    assert load_pretrained(fresh.pretrained_modules(), path) == {"steps": 5, "best_step": 5, "held_out_loss": 1.5}
    for mine, theirs in zip(trained.behaviour_mdn.state_dict().values(), fresh.behaviour_mdn.state_dict().values()):
        torch.testing.assert_close(mine, theirs)
    assert load_pretrained(fresh.pretrained_modules(), tmp_path / "missing.pt") is None


def test_cache_key_covers_the_state_scaler_and_keeps_the_default_runs_key(toy_dataset, tmp_path):
    default = parse_config([])
    authors_scaler = parse_config(["--scaler_noise", "0.05"])
    agent = small_lom()
    key = pretrain_key(agent, default)
    assert key == {"normalise": True, **agent.pretrain_signature()}  # as cached by earlier releases
    assert pretrain_key(agent, authors_scaler) == {**key, "scaler_noise": 0.05}
    paths = {cache_file(tmp_path, toy_dataset, "lom", 0, pretrain_key(agent, config)) for config in
             (default, authors_scaler, parse_config(["--normalise", "0"]))}
    assert len(paths) == 3 and all(path.parent == tmp_path for path in paths)
