"""Peer cross-check (issue 28): the NAS-Bench-201 authors' own uniform single-path supernet ("RSPS", Li & Talwalkar
2019, as `xautodl` 1.0.0 builds it: `TinyNetworkRANDOM` through `get_cell_based_tiny_net({"name": "RANDOM", ...})`)
against this harness' SPOS supernet, trained on the same data, batches and schedule, and scored on the same 200-arch
NB201 sample under the same BatchNorm modes. Both Kendall taus against NAS-Bench-201 truth are printed side by side
with their paired difference (harness - peer, bootstrap over the sample's archs).

    python benchmarks/peer_xautodl.py [--seed 0] [--epochs N] [--out peer.json] [--data-root DIR]
        [--setup-only] [hydra overrides ...]

Run it with the project's venv. It is a benchmark, not a test (the default test run does not collect it).

Setup. xautodl lives in its own venv, never the project's: on first use the script makes `benchmarks/.venv-peer`
(`--venv` or ONESHOT_PEER_VENV to move it) with `python -m venv`, installs `xautodl==1.0.0` from the package
registry with `pip install --no-deps` (its declared `numpy<=1.19.5` and `fvcore` are not installed: the parts used
here need only torch), and writes a `.pth` file that puts the project venv's site-packages after its own, so torch,
numpy and scipy are the project's pinned ones and nothing large is downloaded. A `.gitignore` holding `*` inside that
venv keeps git from listing it (as `python -m venv` itself does from Python 3.13). The script then re-executes
itself with the peer venv's python and the repo root on PYTHONPATH, so both `xautodl` and the harness import.
`--setup-only` stops after the setup.

What is the same on both sides.
- Data: the harness' own loader at `budget=compare` (16 px CIFAR-10, 2,500 training and 2,500 search-val images from
  the subset at `--data-root` / ONESHOT_CIFAR10_ROOT), composed as `run.py` would compose `method=spos space=nb201
  data=cifar10 truth=nb201 budget=compare seed=<seed> budget.ranking_every=0`, built by `evaluators.runner`
  (`plan_run`, `prepare`, `train`) in a temporary results directory.
- Batches: the peer draws its training batches from `run.data.batches("train", ...)` with a generator seeded as the
  SPOS method's own, epoch by epoch with the same number of steps: the same images, in the same order, with the same
  augmentation (checked: both generators end training in the same state).
- Schedule (read from the composed budget): `budget.search_epochs` epochs of batch `budget.batch_size`, SGD lr
  `budget.lr`, momentum `budget.momentum` (Nesterov), weight decay `budget.weight_decay`, cosine decay to 0 over every
  step, gradient norm clipped at `budget.grad_clip`, one uniformly random arch per step (the peer's own
  `random_genotype(True)` on Python's `random` seeded with the seed; the harness' `space.sample` on its own RNG: the
  same distribution, different draws). Gradients of the candidates off the step's path are None
  (`zero_grad(set_to_none=True)`, torch's default), so neither side moves or decays them.
- Network: C = `budget.net.channels`, N = `budget.net.cells_per_stage` (16 and 1 at compare), 4 nodes, the NB201 op
  list, 10 classes. The peer's stem, ResNet blocks and head BNs are affine and track statistics (xautodl's defaults),
  its candidate-op BNs are built as RANDOM-NAS.py builds them: `affine=False`, `track_running_stats` from its
  `--track_running_stats` flag (0 in the script's usage line, `RANDOM-NAS.sh cifar10 0 -1`). The harness' SPOS builds
  its candidate-op BNs non-affine too (`method.params.bn_affine=false`, the official SPOS supernet).
  The peer is trained once, built with `track_running_stats=True` (BN1). In training mode a BN normalises with the
  batch's statistics whether or not it tracks them, so BN1 and BN0 training are the same computation (checked on one
  step before training: same loss and gradients); BN1 keeps running statistics that the running and recalibrating
  modes need. For the BN0 scores (`batch_stats_choice` and the peer's own protocol) the trained weights are loaded
  into a BN0 build, the official default (checked: its eval-mode logits equal `batch_stats_choice` on the BN1 net).
- Arch mapping: a harness nb201 arch (6 op indices, edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) is encoded to the
  official string and parsed by xautodl's `Structure.str2structure`; every edge's op name and source node are checked
  against the harness' `EDGES`/`OPS`, and peer draws are checked to decode back to the same string.
- Scoring modes (`methods/bn_scoring.py`, harness: `supernet_accuracy(arch, mode=...)`; peer: the same rules
  implemented here on its BNs, every BN buffer, momentum and flag restored after each arch), all on the same
  `budget.score_batches` unshuffled, unaugmented search-val batches of `budget.batch_size`:
  recalibrate_all (every BN reset and re-estimated, cumulative average, whole net in training mode, on
  `budget.bn_recalibration_batches` training batches drawn with a generator seeded with the seed),
  recalibrate_choice (only the candidate-op BNs, "choice BNs": the harness' `choice_batchnorms`, the peer's BNs
  inside its search cells' edges; the rest in eval mode), batch_stats_choice (choice BNs on each batch's statistics,
  the rest on trained statistics), running (eval mode throughout).
- The peer's own protocol, a row for the peer only: RANDOM-NAS.py's `search_find_best` (exps/NAS-Bench-201-algos in
  D-X-Y/AutoDL-Projects) picks the arch with the best top-1 on ONE batch of its search-valid loader (test_batch_size
  512 from configs/nas-benchmark/algos/RANDOM.config, shuffled, no augmentation), each sampled arch on the next batch
  of the loader, the BN0 net in eval mode. Here every sample arch, in sample order, gets the next 512-image batch of
  the search-val split (reshuffled each pass with a generator seeded with the seed), BN0 net in eval mode.

Where the peer side departs from xautodl's official search (RANDOM-NAS.py with RANDOM.config): the harness' data
(16 px images instead of 32 px, 2,500 training and 2,500 search-val images of the subset instead of the 25k/25k
cifar-split, the harness' batched crop+flip augmentation instead of torchvision's transforms and Normalize); the
harness' schedule (compare: 50 epochs instead of 250, batch 128 instead of 64, lr 0.05 instead of 0.025, weight decay
3e-4 instead of 5e-4, cosine to 0 per step instead of to eta_min 0.001); C=16, N=1 instead of N=5; one training run
on one CPU thread instead of DataParallel on a GPU; channels_last weights and inputs, as the harness runs its own;
`zero_grad` sets grads to None (torch >= 2), where the torch of the official runs zeroed them, so idle candidates
kept moving on momentum and weight decay; no per-epoch validation, checkpoints or per-epoch `search_find_best`
(they do not change the weights); scoring ranks the harness' fixed sample instead of `select_num` fresh random archs.
The peer's own modules keep xautodl's choices where they differ from the harness': its non-affine candidate convs
have a bias (`bias=not affine`), its `none` op multiplies by 0 instead of skipping the edge.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / "benchmarks" / ".venv-peer"
XAUTODL = "xautodl==1.0.0"
CHILD_ENV = "ONESHOT_PEER_CHILD"  # set when the script re-executes itself in the peer venv
STAMP = "oneshot-peer.json"  # in the peer venv: what it was set up with
MODES = ("recalibrate_all", "recalibrate_choice", "batch_stats_choice", "running")
PEER_TEST_BATCH = 512  # RANDOM.config's test_batch_size: the batch of search_find_best's one-batch score
LITERAL = "peer protocol (BN0, 1 batch)"


# ---- setup: the peer venv -------------------------------------------------------------------------------------------

def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def purelib(python: Path | str) -> str:
    return subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()


def expected_stamp() -> dict[str, str]:
    return {"xautodl": XAUTODL, "project_site": sysconfig.get_paths()["purelib"],
            "python": f"{sys.version_info.major}.{sys.version_info.minor}"}


def setup_venv(venv: Path) -> Path:
    """The peer venv, made (or remade, when it was set up for another xautodl, project venv or Python) and
    checked; returns its python."""
    stamp = venv / STAMP
    want = expected_stamp()
    python = venv_python(venv)
    if python.is_file() and stamp.is_file():
        try:
            ok = json.loads(stamp.read_text()) == want
        except ValueError:
            ok = False
        if ok:
            return python
    print(f"setting up the peer venv {venv} ({XAUTODL}, torch from {want['project_site']})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    (venv / ".gitignore").write_text("# made by benchmarks/peer_xautodl.py: not part of the repository\n*\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
                    XAUTODL], check=True)
    site = Path(purelib(python))
    # after the peer venv's own site-packages: xautodl (and pip) from here, torch/numpy/scipy from the project's
    (site / "oneshot_project_site.pth").write_text(want["project_site"] + "\n")
    check = ("import sys, torch, xautodl; from xautodl.models import get_cell_based_tiny_net; "
             "print(xautodl.version(), xautodl.__file__, torch.__version__, torch.__file__)")
    out = subprocess.run([str(python), "-c", check], check=True, capture_output=True, text=True).stdout.split()
    version, xfile, torch_version, tfile = out
    if version != XAUTODL.split("==")[1] or not xfile.startswith(str(site)) or not tfile.startswith(
            want["project_site"]):
        raise SystemExit(f"peer venv check failed: xautodl {version} at {xfile}, torch {torch_version} at {tfile}")
    stamp.write_text(json.dumps(want, indent=1))
    print(f"peer venv ready: xautodl {version} ({xfile}), torch {torch_version} ({tfile})", flush=True)
    return python


def reexec_in_venv(python: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env[CHILD_ENV] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    os.execve(str(python), [str(python), str(Path(__file__).resolve()), *sys.argv[1:]], env)


# ---- the comparison (runs in the peer venv) -------------------------------------------------------------------------

def compose(args: argparse.Namespace, workdir: Path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from evaluators.hydra_config import register_configs
    from oneshot_bench.config import from_dictconfig

    register_configs()
    overrides = ["method=spos", "space=nb201", "data=cifar10", "truth=nb201", "budget=compare", f"seed={args.seed}",
                 f"data.root={args.data_root}", "budget.ranking_every=0", f"device={args.device}",
                 f"execution.results_dir={workdir / 'results'}", f"execution.cache_dir={workdir / 'cache'}",
                 "execution.resume=false", f"execution.threads={args.threads}"]
    if args.epochs is not None:
        overrides.append(f"budget.search_epochs={args.epochs}")
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[*overrides, *args.overrides])
    return from_dictconfig(cfg)


def build_peer(net, ops: list[str], track_running_stats: bool):
    from xautodl.models import get_cell_based_tiny_net
    from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM

    model = get_cell_based_tiny_net({"name": "RANDOM", "C": net.channels, "N": net.cells_per_stage, "max_nodes": 4,
                                     "num_classes": net.num_classes, "space": list(ops), "affine": False,
                                     "track_running_stats": track_running_stats})
    assert isinstance(model, TinyNetworkRANDOM), type(model)
    return model


def peer_choice_bns(model) -> list:
    """The BNs inside the search cells' candidate ops (the peer's choice BNs), in module order."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from xautodl.models.cell_searchs.search_cells import NAS201SearchCell

    return [m for cell in model.cells if isinstance(cell, NAS201SearchCell)
            for m in cell.edges.modules() if isinstance(m, _BatchNorm)]


def to_peer(space, arch):
    """The harness arch as xautodl's Structure, its edges and ops checked against the harness' definition."""
    from xautodl.models.cell_searchs.genotypes import Structure

    from search_spaces.nb201 import EDGES, OPS

    encoded = space.encode(arch)
    structure = Structure.str2structure(encoded)
    assert len(structure.nodes) == 3 and structure.tostr() == encoded, encoded
    for e, (i, j) in enumerate(EDGES):
        into = {src: op for op, src in structure.nodes[i - 1]}
        assert len(into) == i == len(structure.nodes[i - 1]) and into[j] == OPS[arch[e]], (encoded, e)
    return structure


def check_mapping(space, model, n: int = 50) -> None:
    """The peer's op list is the harness' (as names), and peer draws decode to the same official strings."""
    from search_spaces.nb201 import OPS

    assert list(model.op_names) == list(OPS), (model.op_names, OPS)
    for _ in range(n):
        genotype = model.random_genotype(False)
        arch = space.decode(genotype.tostr())
        assert to_peer(space, arch).tostr() == genotype.tostr()


class PeerScorer:
    """Supernet accuracy of one arch on the peer under a BN mode, the same rules as methods/bn_scoring.py, every BN
    restored after each arch."""

    def __init__(self, model, calibration: list, val: list):
        from torch.nn.modules.batchnorm import _BatchNorm

        self.model, self.calibration, self.val = model, calibration, val
        self.bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        self.choice = peer_choice_bns(model)

    def accuracy(self, genotype, mode: str) -> float:
        with self.applied(genotype, mode):
            return top1(self.model, self.val)

    @contextmanager
    def applied(self, genotype, mode: str) -> Iterator[None]:
        """Inside the block the model runs `genotype` with its BNs as `mode` says; on exit every BN buffer,
        momentum and train/eval flag is as it was."""
        import torch

        model = self.model
        saved = [(bn, {k: v.clone() for k, v in bn.named_buffers(recurse=False) if v is not None}, bn.momentum,
                  bn.training) for bn in self.bns]
        was_training = model.training
        model.arch_cache = genotype
        try:
            with torch.no_grad():
                if mode in ("recalibrate_all", "recalibrate_choice"):
                    targets = self.bns if mode == "recalibrate_all" else self.choice
                    for bn in targets:
                        bn.reset_running_stats()
                        bn.momentum = None  # cumulative average over the calibration batches
                    if mode == "recalibrate_all":
                        model.train()
                    else:
                        model.eval()
                        for bn in targets:
                            bn.train()
                    for x, _ in self.calibration:
                        model(x)
                    model.eval()
                elif mode == "batch_stats_choice":
                    model.eval()
                    for bn in self.choice:
                        bn.train()
                        bn.momentum = 0.0  # batch statistics, running ones untouched
                elif mode == "running":
                    model.eval()
                else:
                    raise ValueError(f"unknown BN mode {mode!r}")
                yield
        finally:
            for bn, buffers, momentum, _ in saved:
                for name, value in buffers.items():
                    getattr(bn, name).copy_(value)
                bn.momentum = momentum
            model.train(was_training)
            for bn, _, _, training in saved:
                bn.train(training)


def top1(model, batches) -> float:
    correct, total = 0, 0
    for x, y in batches:
        correct += int((model(x)[1].argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / max(1, total)


def check_bn0_training_equals_bn1(net, ops, data, batch_size: int, seed: int) -> None:
    """One training step's loss and gradients are the same for the peer built with and without tracked BN
    statistics: one training (BN1) stands for both."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    bn1 = build_peer(net, ops, True)
    bn0 = build_peer(net, ops, False)
    load_bn0(bn0, bn1.state_dict())
    x, y = next(data.batches("train", batch_size, torch.Generator().manual_seed(seed)))
    genotype = bn1.random_genotype(True)
    bn0.arch_cache = genotype
    grads = []
    for model in (bn1, bn0):
        model.train()
        loss = F.cross_entropy(model(x)[1], y)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (l1, g1), (l0, g0) = grads
    assert torch.equal(l1, l0) and g1.keys() == g0.keys(), (l1, l0)
    worst = max(float((g1[k] - g0[k]).abs().max()) for k in g1)
    assert worst <= 1e-6, f"BN0 and BN1 training steps differ (max gradient difference {worst})"


def load_bn0(bn0, state: dict) -> None:
    """Trained BN1 weights into a BN0 build: everything but the candidate BNs' running statistics."""
    result = bn0.load_state_dict(state, strict=False)
    assert not result.missing_keys, result.missing_keys
    assert all(".edges." in k and k.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")
               for k in result.unexpected_keys), result.unexpected_keys


def train_peer(model, run, generator, steps: int) -> tuple[float, list[float]]:
    """The peer's training on the harness' batches and schedule; returns (seconds, mean loss per epoch)."""
    import torch
    import torch.nn.functional as F

    b = run.plan.cfg.budget
    optimizer = torch.optim.SGD(model.parameters(), lr=b.lr, momentum=b.momentum, weight_decay=b.weight_decay,
                                nesterov=b.momentum > 0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, b.search_epochs * steps))
    losses = []
    start = time.perf_counter()
    for _ in range(b.search_epochs):
        total, count = 0.0, 0
        for x, y in run.data.batches("train", b.batch_size, generator, max_batches=steps):
            model.random_genotype(True)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x)[1], y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), b.grad_clip)
            optimizer.step()
            scheduler.step()
            total, count = total + loss.detach(), count + 1
        losses.append(float(total) / count)
        if not math.isfinite(losses[-1]):
            raise SystemExit(f"peer training diverged (loss {losses[-1]})")
    return time.perf_counter() - start, losses


def literal_scores(bn0, genotypes: list, run, seed: int) -> list[float]:
    """RANDOM-NAS.py's search_find_best: each arch's top-1 on the next batch of a shuffled, unaugmented search-val
    loader of test_batch_size images, BN0 net in eval mode."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def loader():
        while True:
            yield from run.data.batches("val", PEER_TEST_BATCH, generator, augment=False)

    batches = loader()
    bn0.eval()
    scores = []
    with torch.no_grad():
        for genotype in genotypes:
            bn0.arch_cache = genotype
            scores.append(top1(bn0, [next(batches)]))
    return scores


def fmt_ci(value: float, low: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def compare(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    import xautodl

    from evaluators.paired import tau_difference
    from evaluators.ranking import ranking_metrics
    from evaluators.runner import free_references, plan_run, prepare, train
    from oneshot_bench.config import BnMode
    from oneshot_bench.measure import count_params
    from search_spaces.nb201 import OPS

    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="peer-xautodl-") as tmp:
        cfg = compose(args, Path(tmp))
        b, seed = cfg.budget, cfg.seed
        plan = plan_run(cfg)
        run = prepare(plan)
        method, space = plan.method, plan.space
        sample, truth = run.sample_and_truth()
        print(f"seed {seed}: {b.search_epochs} epochs x {method.steps_per_epoch} steps of {b.batch_size}, "
              f"{len(run.data.train)} train / {len(run.data.val)} val images at {run.data.resolution} px, "
              f"{len(sample)}-arch sample, net C={run.net.channels} N={run.net.cells_per_stage}", flush=True)

        # ---- the peer, built and checked before anything trains (torch's global RNG forked: the harness trains
        # from the state `prepare` left, as in `python run.py`)
        ops = list(OPS)
        with torch.random.fork_rng(devices=[]):
            check_bn0_training_equals_bn1(run.net, ops, run.data, b.batch_size, seed)
            torch.manual_seed(seed)
            peer = build_peer(run.net, ops, True).to(plan.device).to(memory_format=torch.channels_last)
        check_mapping(space, peer)
        random.seed(seed)  # the peer's arch draws (random_genotype uses Python's global RNG)
        genotypes = [to_peer(space, a) for a in sample]
        peer_build = (f"xautodl {xautodl.version()} TinyNetworkRANDOM(C={run.net.channels}, "
                      f"N={run.net.cells_per_stage}, max_nodes=4, num_classes={run.net.num_classes}, space={ops}, "
                      f"affine=False, "
                      f"track_running_stats=True for training and running/recalibrating modes; the same weights in "
                      f"a track_running_stats=False build for batch_stats_choice and the peer protocol)")
        harness_build = (f"SPOS supernet, candidate-op BNs affine={method.choice_bn_affine()}, "
                         f"{count_params(method.supernet)} params")
        print(f"peer:    {peer_build}, {count_params(peer)} params ({xautodl.__file__})")
        print(f"harness: {harness_build}", flush=True)

        # ---- training, harness then peer, on the same batches
        train(run, progress=False)
        harness_seconds = run.meter.seconds["supernet_train"]
        steps = method.steps_per_epoch
        peer_generator = torch.Generator().manual_seed(seed)  # as the method's (methods/base.py setup)
        peer_seconds, peer_losses = train_peer(peer, run, peer_generator, steps)
        same_batches = torch.equal(peer_generator.get_state(), method.generator.get_state())
        assert same_batches, "the peer's batch generator ended elsewhere than the harness': not the same batches"
        total_steps = b.search_epochs * steps
        harness_loss = run.history[-1]["train_loss"] if run.history else math.nan
        print(f"trained: harness {1e3 * harness_seconds / total_steps:.1f} ms/step (last-epoch loss "
              f"{harness_loss:.3f}), peer {1e3 * peer_seconds / total_steps:.1f} ms/step (last-epoch loss "
              f"{peer_losses[-1]:.3f}); same batches: {same_batches}", flush=True)

        # ---- scoring: the same archs, val batches and calibration batches
        val = list(run.data.batches("val", b.batch_size, torch.Generator(), shuffle=False, augment=False,
                                    max_batches=b.score_batches))
        calibration = list(run.data.batches("train", b.batch_size, torch.Generator().manual_seed(seed),
                                            max_batches=b.bn_recalibration_batches))
        scorer = PeerScorer(peer, calibration, val)
        bn0 = build_peer(run.net, ops, False).to(plan.device).to(memory_format=torch.channels_last)
        load_bn0(bn0, peer.state_dict())
        bn0.eval()
        with torch.no_grad():
            for g in genotypes[:3]:
                bn0.arch_cache = g
                with scorer.applied(g, "batch_stats_choice"):
                    expected = peer(val[0][0])[1]
                got = bn0(val[0][0])[1]
                assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5), \
                    f"BN0 eval is not batch_stats_choice on the BN1 net ({float((got - expected).abs().max())})"
        scores: dict[str, dict[str, list[float]]] = {m: {"harness": [], "peer": []} for m in MODES}
        seconds = {"harness": 0.0, "peer": 0.0}
        for i, (arch, genotype) in enumerate(zip(sample, genotypes, strict=True)):
            for mode in MODES:
                start = time.perf_counter()
                scores[mode]["harness"].append(method.supernet_accuracy(arch, mode=BnMode(mode)))
                seconds["harness"] += time.perf_counter() - start
                start = time.perf_counter()
                scores[mode]["peer"].append(scorer.accuracy(genotype, mode))
                seconds["peer"] += time.perf_counter() - start
            if (i + 1) % 50 == 0:
                print(f"scored {i + 1}/{len(sample)} archs", flush=True)
        literal = literal_scores(bn0, genotypes, run, seed)
        references = free_references(run, sample, truth)

    resamples = b.bootstrap_resamples
    metrics = lambda values: ranking_metrics(values, truth, resamples=resamples, seed=seed)  # noqa: E731
    rows = {}
    for mode in MODES:
        h, p = scores[mode]["harness"], scores[mode]["peer"]
        diff = tau_difference(h, p, truth, resamples=resamples, seed=seed)
        rows[mode] = {"harness": metrics(h), "peer": metrics(p),
                      "difference": {"tau": diff.difference, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                                     "valid_resamples": diff.valid_resamples}}
    rows[LITERAL] = {"harness": None, "peer": metrics(literal), "difference": None}
    result = {
        "seed": seed, "epochs": b.search_epochs, "steps_per_epoch": steps, "batch_size": b.batch_size,
        "lr": b.lr, "momentum": b.momentum, "weight_decay": b.weight_decay, "grad_clip": b.grad_clip,
        "resolution": run.data.resolution, "train_images": len(run.data.train), "val_images": len(run.data.val),
        "score_batches": b.score_batches, "bn_recalibration_batches": b.bn_recalibration_batches,
        "bootstrap_resamples": resamples, "threads": args.threads, "device": str(plan.device),
        "torch": torch.__version__, "xautodl": xautodl.version(),
        "peer_build": peer_build, "harness_build": harness_build,
        "ms_per_step": {"harness": 1e3 * harness_seconds / total_steps, "peer": 1e3 * peer_seconds / total_steps},
        "scoring_seconds": seconds, "train_loss_last_epoch": {"harness": harness_loss, "peer": peer_losses[-1]},
        "rows": rows,
        "references": {name: {k: getattr(ref, k) for k in ("kendall_tau", "kendall_tau_ci_low",
                                                              "kendall_tau_ci_high")}
                       for name, ref in references.items()},
        "sample": [space.encode(a) for a in sample], "truth": truth,
        "scores": {**{m: scores[m] for m in MODES}, LITERAL: {"peer": literal}},
        "wall_seconds": time.perf_counter() - wall,
    }
    return result


def table(result: dict) -> str:
    dash = "—"
    lines = [f"seed {result['seed']}: Kendall tau [95% CI] against NAS-Bench-201 on the same {len(result['sample'])} "
             f"archs ({result['epochs']} epochs, {result['bootstrap_resamples']} paired bootstrap resamples)",
             "", "| mode | harness SPOS | peer xautodl RSPS | harness − peer |", "| --- | --- | --- | --- |"]
    for mode, row in result["rows"].items():
        cells = []
        for side in ("harness", "peer"):
            m = row[side]
            cells.append(dash if m is None else fmt_ci(m["kendall_tau"], m["kendall_tau_ci_low"],
                                                       m["kendall_tau_ci_high"]))
        d = row["difference"]
        cells.append(dash if d is None else fmt_ci(d["tau"], d["ci_low"], d["ci_high"]))
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    for name, ref in result["references"].items():
        lines.append(f"| {name} (no training) | " + fmt_ci(ref["kendall_tau"], ref["kendall_tau_ci_low"],
                                                           ref["kendall_tau_ci_high"]) + " (same sample) | | |")
    ms, sc = result["ms_per_step"], result["scoring_seconds"]
    lines += ["", f"training: harness {ms['harness']:.1f} ms/step, peer {ms['peer']:.1f} ms/step "
                  f"({result['epochs']} x {result['steps_per_epoch']} steps, {result['threads']} thread(s), "
                  f"{result['device']}); scoring {len(result['rows']) - 1} modes x {len(result['sample'])} archs: "
                  f"harness {sc['harness']:.0f} s, peer {sc['peer']:.0f} s; wall {result['wall_seconds']:.0f} s",
              f"peer: {result['peer_build']}", f"harness: {result['harness_build']}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the sample and data seed too)")
    parser.add_argument("--epochs", type=int, default=None, help="override budget.search_epochs (default: compare's)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--data-root", default=os.environ.get("ONESHOT_CIFAR10_ROOT"),
                        help="the CIFAR-10 folder (holding cifar-10-batches-py/); default $ONESHOT_CIFAR10_ROOT")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    parser.add_argument("--venv", type=Path, default=Path(os.environ.get("ONESHOT_PEER_VENV", DEFAULT_VENV)),
                        help=f"the peer venv (default {DEFAULT_VENV.relative_to(REPO)}, or $ONESHOT_PEER_VENV)")
    parser.add_argument("--setup-only", action="store_true", help="make the peer venv and stop")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides (e.g. budget.ranking_sample=20)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    venv = args.venv.resolve()
    in_venv = Path(sys.prefix).resolve() == venv
    if not in_venv:
        if os.environ.get(CHILD_ENV):
            raise SystemExit(f"re-executed, but not inside the peer venv {venv} (sys.prefix {sys.prefix})")
        python = setup_venv(venv)
        if args.setup_only:
            print(f"peer venv ready at {venv}")
            return 0
        if not args.data_root:
            raise SystemExit("no CIFAR-10 folder: pass --data-root or set ONESHOT_CIFAR10_ROOT")
        reexec_in_venv(python)
    if args.setup_only:
        return 0
    if not args.data_root:
        raise SystemExit("no CIFAR-10 folder: pass --data-root or set ONESHOT_CIFAR10_ROOT")
    result = compare(args)
    print()
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
