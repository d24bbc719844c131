"""Load params.yaml once into small frozen config objects, rejecting unknown keys and bad values."""

import dataclasses
import difflib
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from transfer.errors import UserError
from transfer.paths import PARAMS_PATH

SYNTHETIC_SOURCE = "synthetic"
DATASETS = ("cifar100", "cifar10", "folder")  # two python archives (cifar10 has no superclasses), or your images
FOLDER_DATASET = "folder"  # train/<class>/* (optionally test/<class>/*) under data.folder
# Each dataset's official archive: (URL, MD5), as published at https://www.cs.toronto.edu/~kriz/cifar.html
OFFICIAL_ARCHIVES = {
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
}
ARCHITECTURES = ("resnet18", "resnet34", "resnet50")  # torchvision ResNets with IMAGENET1K_V1 weights
IMAGENET_WEIGHTS = "imagenet"
RANDOM_WEIGHTS = "random"
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "step", "constant")
# The backbone's blocks in forward order; a strategy trains a suffix of them.
BACKBONE_BLOCKS = ("stem", "layer1", "layer2", "layer3", "layer4")
ALL_BLOCKS = "all"
MIN_IMAGE_SIZE = 32  # px; CIFAR images are 32x32 and are never downscaled
CIFAR_STORED_SIZE = 32  # px: the side of every CIFAR image, what data.stored_size must say for the archives
MIN_STORED_SIZE = 16  # px: below this a photo keeps too little to classify; image_size upsamples it to >= 32
# px; 16x CIFAR's side adds no detail, and a batch of 256 such inputs is already 0.8 GB of float32
MAX_IMAGE_SIZE = 512
STRATEGY_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
MAX_SEED = 2**32
STRATEGY_KEYS = ("pretrained", "train_layers", "augment")  # what every `strategies` entry says
OPTIONAL_STRATEGY_KEYS = ("stem", "phases")
LR_FACTORS_KEY = "lr_factors"  # strategy.lr_factors: shared by every strategy, never overridden by one
PHASE_KEY = "train_layers"  # the one key every phase must set; it may also set any `strategy` key but seeds
ALL_TRAIN_SIZE = "all"  # the whole training split: what train@<strategy> trains on, never listed in data.train_sizes
# results/sizes/ holds the smaller training sets' results (transfer/paths.py): a strategy of that name would clash.
RESERVED_STRATEGY_NAMES = ("sizes",)
STEMS = ("imagenet", "cifar")  # imagenet: torchvision's 7x7 stride-2 conv and max-pool; cifar: 3x3 stride-1, no pool


@dataclass(frozen=True)
class AugmentConfig:
    crop_padding: int  # px of zero padding before the random 32x32 crop; 0 disables
    horizontal_flip: bool


@dataclass(frozen=True)
class SyntheticConfig:
    train_size: int
    test_size: int
    seed: int


@dataclass(frozen=True)
class DataConfig:
    dataset: str  # one of DATASETS: which archive format source holds
    source: str  # http(s) URL, local path or "synthetic"
    md5: str
    folder: str  # dataset folder: the directory of train/<class>/ (and test/<class>/) images
    stored_size: int  # px: side of the square each image is stored at (CIFAR: 32; a folder's shorter side, cropped)
    test_size: int  # dataset folder without test/: images of train/ held out for testing
    val_size: int
    split_seed: int  # draws the validation split
    image_size: int  # px
    augment: AugmentConfig
    synthetic: SyntheticConfig
    # Smaller training sets every strategy also trains on, in images per class (train_subset@<strategy>-<n>);
    # the whole training split always trains (train@<strategy>). transfer/training/subset.py draws them.
    train_sizes: tuple[int, ...]
    subset_min_steps: int  # the budget rule: a smaller training set trains at least this many optimizer steps

    @property
    def is_synthetic(self) -> bool:
        """True when the archive is generated rather than fetched (a folder dataset reads no archive)."""
        return self.source == SYNTHETIC_SOURCE and self.dataset != FOLDER_DATASET

    @property
    def is_folder(self) -> bool:
        """True when the images come from data.folder rather than an archive."""
        return self.dataset == FOLDER_DATASET

    @property
    def is_url(self) -> bool:
        """True when the archive is fetched over http(s)."""
        return self.source.startswith(("http://", "https://"))


@dataclass(frozen=True)
class HeadConfig:
    hidden_size: int  # 0 means a single Linear layer
    dropout: float


@dataclass(frozen=True)
class ModelConfig:
    arch: str  # one of ARCHITECTURES: the backbone network
    weights: str  # "imagenet", "random" or a local path
    random_weights_seed: int
    head: HeadConfig


@dataclass(frozen=True)
class ComputeConfig:
    device: str
    precision: str  # auto: bf16 where the hardware gains from it, else fp32
    channels_last: bool
    compile: bool  # torch.compile the network
    nproc: int  # data-parallel training processes (torchrun + DDP); 1 is a plain process
    eval_batch_size: int


@dataclass(frozen=True)
class TrainingConfig:
    seeds: tuple[int, ...]  # one training run per seed: init, shuffling, augmentation
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    scheduler: str
    step_epochs: int
    gamma: float


@dataclass(frozen=True)
class PhaseConfig:
    train_layers: tuple[str, ...]  # backbone blocks that train in this phase, a suffix of BACKBONE_BLOCKS
    training: TrainingConfig  # the strategy's training with this phase's overrides applied
    own_lr: bool  # the phase sets its lr; a searched lr list then leaves it alone


@dataclass(frozen=True)
class LrCandidate:
    """One rate a search tries on a strategy: the strategy's lr, and the factor on its phases' own lrs."""

    lr: float  # every phase without its own lr trains at it
    factor: float = 1.0  # strategy.lr_factors' entry: it scales each phase's own lr too; 1 for an lr list's entry


@dataclass(frozen=True)
class StrategyConfig:
    name: str
    pretrained: bool
    train_layers: tuple[str, ...]  # backbone blocks that train (with phases: the widest phase's)
    augment: bool  # apply data.augment; without it, frozen features are computed once
    training: TrainingConfig  # `strategy` with this strategy's overrides applied (lr: the first candidate)
    lr_candidates: tuple[LrCandidate, ...] = ()  # chosen on validation; one entry: no search
    stem: str = "imagenet"
    phases: tuple[PhaseConfig, ...] = ()  # empty: one phase of train_layers and training

    def run_phases(self) -> tuple[PhaseConfig, ...]:
        """The phases training runs through, in order; a strategy without `phases` is one."""
        return self.phases or (PhaseConfig(self.train_layers, self.training, own_lr=False),)

    def at_candidate(self, candidate: LrCandidate) -> "StrategyConfig":
        """This strategy trained at one candidate: phases without their own lr take its lr, the others scale theirs.

        A factor of 1 leaves a phase's own lr exactly as written (x * 1.0 == x in floating point).
        """
        phases = tuple(
            dataclasses.replace(
                phase,
                training=dataclasses.replace(
                    phase.training, lr=phase.training.lr * candidate.factor if phase.own_lr else candidate.lr
                ),
            )
            for phase in self.phases
        )
        return dataclasses.replace(self, training=dataclasses.replace(self.training, lr=candidate.lr), phases=phases)


@dataclass(frozen=True)
class ReportConfig:
    equivalence_margin: float  # of top-1 accuracy: a strategy within it of the best, shown so, is "equivalent"


@dataclass(frozen=True)
class Params:
    data: DataConfig
    model: ModelConfig
    compute: ComputeConfig
    strategy: TrainingConfig
    report: ReportConfig
    strategies: dict[str, StrategyConfig]

    def strategy_named(self, name: str) -> StrategyConfig:
        """The strategy called name, or a UserError listing the defined ones."""
        if name not in self.strategies:
            raise UserError(f"unknown strategy {name!r}; params.yaml defines: {', '.join(self.strategies)}")
        return self.strategies[name]


def load_params(path: Path = PARAMS_PATH) -> Params:
    """Read and validate params.yaml; raise UserError naming the first bad key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found; run from the project root") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path} is not valid YAML: {error}".replace("\n", " ")) from None
    return parse_params(raw)


def parse_params(raw: object) -> Params:
    """Build Params from the parsed YAML tree; raise UserError naming the first bad key."""
    tree = _require_mapping(raw, "params.yaml")
    _reject_unknown(tree, {field.name for field in dataclasses.fields(Params)}, "")
    strategies_raw = _require_mapping(tree.get("strategies"), "strategies")
    simple_tree = {key: value for key, value in tree.items() if key != "strategies"}
    simple_tree["strategies"] = {}
    shared_raw = simple_tree.get("strategy")
    search = SharedSearch()
    if isinstance(shared_raw, dict):  # otherwise _build names what is wrong
        shared_raw = dict(shared_raw)
        if LR_FACTORS_KEY in shared_raw:
            search.factors = _parse_lr_factors(shared_raw.pop(LR_FACTORS_KEY))
        if "lr" in shared_raw:  # otherwise _build names what is missing
            search.lrs = _parse_lrs(shared_raw["lr"], "strategy.lr")
            # Params.strategy holds one number; the candidates travel beside it into every strategy.
            shared_raw["lr"] = search.lrs[0]
        simple_tree["strategy"] = shared_raw
    if len(search.lrs) > 1 and len(search.factors) > 1:
        raise UserError(
            f"strategy.lr = {list(search.lrs)} and strategy.lr_factors = {list(search.factors)} both search the "
            f"rate: drop one (keep strategy.lr one number, e.g. {search.lrs[0]}, and the factors scale it)"
        )
    data_raw = simple_tree.get("data")
    if isinstance(data_raw, dict) and "train_sizes" in data_raw:  # otherwise _build names what is missing
        _refuse_all_in_train_sizes(data_raw["train_sizes"])
    params = _build(Params, simple_tree, "")
    _validate_common(params)
    strategies = {name: _parse_strategy(name, entry, params.strategy, search) for name, entry in strategies_raw.items()}
    if not strategies:
        raise UserError("strategies is empty; define at least one, e.g. shallow, deep or scratch")
    _require_equal_shared_search(strategies, search)
    return dataclasses.replace(params, strategies=strategies)


@dataclass
class SharedSearch:
    """What `strategy` asks every strategy to search: an lr list, or factors on each strategy's own rates."""

    lrs: tuple[float, ...] = ()
    factors: tuple[float, ...] = (1.0,)  # strategy.lr_factors; absent: every rate as written


def _parse_lr_factors(value: object) -> tuple[float, ...]:
    """strategy.lr_factors: a non-empty list of distinct finite numbers above 0."""
    if not isinstance(value, list) or not value:
        raise UserError(
            f"strategy.lr_factors = {value!r} is invalid: use a non-empty list of numbers above 0, "
            "e.g. [0.3, 1, 3] (or [1]: no search)"
        )
    factors = tuple(_convert(item, float, f"strategy.lr_factors[{index}]") for index, item in enumerate(value))
    for index, factor in enumerate(factors):
        _require_positive(factor, f"strategy.lr_factors[{index}]")
    _require_distinct(factors, "strategy.lr_factors", "factors")
    return factors


def _lr_candidates(lrs: tuple[float, ...], factors: tuple[float, ...], key_path: str) -> tuple[LrCandidate, ...]:
    """A strategy's candidates: each lr of its list, or its one lr times each factor."""
    if len(lrs) > 1 and len(factors) > 1:
        raise UserError(
            f"{key_path}.lr = {list(lrs)} and strategy.lr_factors = {list(factors)} both search {key_path}'s rate: "
            f"drop one (give {key_path}.lr one number, e.g. {lrs[0]}, and the factors scale it)"
        )
    if len(lrs) > 1:
        return tuple(LrCandidate(lr) for lr in lrs)
    return tuple(LrCandidate(lrs[0] * factor, factor) for factor in factors)


def _require_equal_shared_search(strategies: dict[str, StrategyConfig], search: SharedSearch) -> None:
    """A shared lr list must reach every rate of every strategy, or some would be tuned over fewer candidates.

    A strategy's own lr replaces the list, and a phase's own lr is never searched by it; lr_factors scale
    every rate, so they are the equal search (a list on one strategy is that strategy's own choice).
    """
    if len(search.lrs) < 2:
        return
    unequal = [
        name
        for name, strategy in strategies.items()
        if len(strategy.lr_candidates) != len(search.lrs) or any(phase.own_lr for phase in strategy.phases)
    ]
    if unequal:
        raise UserError(
            f"strategy.lr = {list(search.lrs)} would not tune {', '.join(unequal)} over these {len(search.lrs)} "
            "rates (their own lr, or a phase's, replaces the list): to search every strategy alike, set strategy.lr "
            "to one number and strategy.lr_factors, e.g. [0.1, 1], which scales each strategy's own rates"
        )


def _parse_strategy(name: object, entry: object, shared: TrainingConfig, search: SharedSearch) -> StrategyConfig:
    """One `strategies` entry: what trains, whether weights load, overrides of `strategy`, its phases."""
    if not isinstance(name, str) or not STRATEGY_NAME_PATTERN.fullmatch(name):
        raise UserError(f"strategy name {name!r} is invalid: use lowercase letters, digits and _ (e.g. deep_l3)")
    if name in RESERVED_STRATEGY_NAMES:
        raise UserError(
            f"strategy name {name!r} is reserved: results/{name}/ holds the results of data.train_sizes; rename it"
        )
    key_path = f"strategies.{name}"
    fields = _require_mapping(entry, key_path)
    training_keys = {field.name for field in dataclasses.fields(TrainingConfig)}
    if LR_FACTORS_KEY in fields:
        raise UserError(
            f"{key_path}.{LR_FACTORS_KEY} is invalid: the factors are shared so every strategy is tuned over as many "
            f"rates; set strategy.{LR_FACTORS_KEY} (or give {key_path}.lr a list to search this strategy alone)"
        )
    _reject_unknown(fields, set(STRATEGY_KEYS) | set(OPTIONAL_STRATEGY_KEYS) | training_keys, key_path)
    has_phases = "phases" in fields
    if has_phases and "train_layers" in fields:
        raise UserError(
            f"{key_path} sets both train_layers and phases: with phases, each phase sets its own train_layers"
        )
    for required in STRATEGY_KEYS:
        if required not in fields and not (has_phases and required == "train_layers"):
            raise UserError(f"missing key '{key_path}.{required}' in params.yaml")
    pretrained = _convert(fields["pretrained"], bool, f"{key_path}.pretrained")
    lrs = _parse_lrs(fields["lr"], f"{key_path}.lr") if "lr" in fields else search.lrs
    lr_candidates = _lr_candidates(lrs, search.factors, key_path)
    overrides = {key: value for key, value in fields.items() if key in training_keys}
    training = _build(TrainingConfig, {**dataclasses.asdict(shared), **overrides, "lr": lrs[0]}, key_path)
    _validate_training(training, key_path)
    stem = _convert(fields.get("stem", STEMS[0]), str, f"{key_path}.stem")
    _require_choice(stem, STEMS, f"{key_path}.stem")
    if stem == "cifar" and pretrained:
        raise UserError(
            f"{key_path}.stem = cifar needs pretrained: false: the pretrained conv1 weights are 7x7, "
            "the CIFAR stem's are 3x3; use stem: imagenet with pretrained weights"
        )
    phases = _parse_phases(fields["phases"], training, f"{key_path}.phases") if has_phases else ()
    if len(lrs) > 1 and phases and all(phase.own_lr for phase in phases):
        raise UserError(
            f"{key_path}: every phase sets its own lr, so the lr list {list(lrs)} would train the same run "
            f"{len(lrs)} times; give the strategy a single lr, e.g. {key_path}.lr: {lrs[0]}"
        )
    train_layers = (
        max((phase.train_layers for phase in phases), key=len)
        if phases
        else _parse_train_layers(fields["train_layers"], f"{key_path}.train_layers")
    )
    augment = _convert(fields["augment"], bool, f"{key_path}.augment")
    return StrategyConfig(name, pretrained, train_layers, augment, training, lr_candidates, stem, phases)


def _parse_phases(value: object, training: TrainingConfig, key_path: str) -> tuple[PhaseConfig, ...]:
    """`phases`: a non-empty list of mappings, each with train_layers and any `strategy` key but seeds."""
    if not isinstance(value, list) or not value:
        raise UserError(
            f"{key_path} = {value!r} is invalid: use a non-empty list of phases, e.g. "
            "[{train_layers: [], epochs: 3}, {train_layers: all, epochs: 7, lr: 0.005}]"
        )
    phase_keys = {field.name for field in dataclasses.fields(TrainingConfig)} - {"seeds"} | {PHASE_KEY}
    phases = []
    for index, entry in enumerate(value):
        phase_path = f"{key_path}[{index}]"
        fields = _require_mapping(entry, phase_path)
        if "seeds" in fields:
            raise UserError(f"{phase_path}.seeds is invalid: seeds apply to the whole strategy, set them there")
        _reject_unknown(fields, phase_keys, phase_path)
        if PHASE_KEY not in fields:
            raise UserError(f"missing key '{phase_path}.{PHASE_KEY}' in params.yaml: each phase says what trains")
        if "lr" in fields and isinstance(fields["lr"], list):
            raise UserError(
                f"{phase_path}.lr = {fields['lr']!r} is invalid: a phase's own lr is one number; "
                "put a list in the strategy's lr to search it"
            )
        overrides = {key: item for key, item in fields.items() if key != PHASE_KEY}
        phase_training = _build(TrainingConfig, {**dataclasses.asdict(training), **overrides}, phase_path)
        _validate_training(phase_training, phase_path)
        train_layers = _parse_train_layers(fields[PHASE_KEY], f"{phase_path}.{PHASE_KEY}")
        phases.append(PhaseConfig(train_layers, phase_training, own_lr="lr" in fields))
    return tuple(phases)


def _parse_lrs(value: object, key_path: str) -> tuple[float, ...]:
    """A learning rate or a non-empty list of candidates, each a finite number above 0."""
    if not isinstance(value, list):
        lr = _convert(value, float, key_path)
        _require_positive(lr, key_path)
        return (lr,)
    if not value:
        raise UserError(f"{key_path} = [] is invalid: use a number or a non-empty list of numbers, e.g. [0.05, 0.005]")
    lrs = tuple(_convert(item, float, f"{key_path}[{index}]") for index, item in enumerate(value))
    for index, lr in enumerate(lrs):
        _require_positive(lr, f"{key_path}[{index}]")
    return lrs


def _parse_train_layers(value: object, key_path: str) -> tuple[str, ...]:
    """'all', or a list naming the last blocks of the backbone (possibly empty: head only)."""
    if value == ALL_BLOCKS:
        return BACKBONE_BLOCKS
    if not isinstance(value, list) or not all(isinstance(block, str) for block in value):
        raise UserError(
            f"{key_path} = {value!r} is invalid: use 'all' or a list of block names from {', '.join(BACKBONE_BLOCKS)}"
        )
    for block in value:
        if block not in BACKBONE_BLOCKS:
            raise UserError(
                f"{key_path} names unknown block {block!r}; valid: {', '.join(BACKBONE_BLOCKS)}"
                f"{_did_you_mean(block, BACKBONE_BLOCKS)}"
            )
    suffix = BACKBONE_BLOCKS[len(BACKBONE_BLOCKS) - len(value) :] if value else ()
    if sorted(value, key=BACKBONE_BLOCKS.index) != list(suffix) or len(set(value)) != len(value):
        raise UserError(
            f"{key_path} = {value} is invalid: the training blocks must be the last ones of the backbone, "
            f"e.g. [layer4] or [layer3, layer4]"
        )
    return tuple(suffix)


def _require_source_of_dataset(data: DataConfig) -> None:
    """Refuse another dataset's official URL or MD5: the download would fail, or prepare would misread it."""
    if data.is_synthetic or data.dataset == FOLDER_DATASET:  # a folder dataset downloads nothing
        return
    for other, (url, md5) in OFFICIAL_ARCHIVES.items():
        if other != data.dataset and (data.source == url or data.md5.lower() == md5):
            key, value = ("data.source", data.source) if data.source == url else ("data.md5", data.md5)
            own_url, own_md5 = OFFICIAL_ARCHIVES[data.dataset]
            raise UserError(
                f"{key} = {value} is the official {other} archive's, but data.dataset = {data.dataset}: "
                f"for {data.dataset} use source {own_url} and md5 {own_md5}"
            )


def _validate_stored_size(data: DataConfig) -> None:
    """CIFAR images are 32 px as stored; a folder's are stored at any side from MIN_STORED_SIZE to MAX_IMAGE_SIZE."""
    if data.dataset != FOLDER_DATASET and data.stored_size != CIFAR_STORED_SIZE:
        raise UserError(
            f"data.stored_size = {data.stored_size} is invalid for data.dataset = {data.dataset}: CIFAR images are "
            f"{CIFAR_STORED_SIZE}x{CIFAR_STORED_SIZE}, so use {CIFAR_STORED_SIZE} (other sizes are for "
            f"data.dataset: {FOLDER_DATASET}; data.image_size resizes the network input)"
        )
    if not MIN_STORED_SIZE <= data.stored_size <= MAX_IMAGE_SIZE:
        raise UserError(
            f"data.stored_size = {data.stored_size} is invalid: use {MIN_STORED_SIZE} to {MAX_IMAGE_SIZE} (pixels)"
        )
    if data.dataset == FOLDER_DATASET and not data.folder:
        raise UserError("data.folder is empty: give the folder that holds train/<class>/ images")


def _validate_common(params: Params) -> None:
    """Range and choice checks for everything outside `strategies`."""
    data = params.data
    if data.dataset not in DATASETS:
        raise UserError(f"data.dataset = {data.dataset!r} is invalid: use one of {', '.join(DATASETS)}")
    _require_source_of_dataset(data)
    _validate_stored_size(data)
    if not (data.is_synthetic or data.is_url or data.source):
        raise UserError("data.source is empty: use an http(s) URL, a local file path or 'synthetic'")
    if not re.fullmatch(r"[0-9a-f]{32}", data.md5.lower()):
        raise UserError(f"data.md5 = {data.md5!r} is not an MD5 digest (32 hex characters)")
    _require_positive(data.val_size, "data.val_size")
    _require_seed(data.split_seed, "data.split_seed")
    lowest = max(MIN_IMAGE_SIZE, data.stored_size)
    if not lowest <= data.image_size <= MAX_IMAGE_SIZE:
        raise UserError(
            f"data.image_size = {data.image_size} is invalid: use {lowest} to {MAX_IMAGE_SIZE} (pixels; "
            f"at least {MIN_IMAGE_SIZE} and never below data.stored_size = {data.stored_size}: store smaller instead)"
        )
    _require_positive(data.test_size, "data.test_size")
    if data.augment.crop_padding < 0:
        raise UserError(
            f"data.augment.crop_padding = {data.augment.crop_padding} is invalid: use 0 (off) or more pixels"
        )
    _validate_train_sizes(data)
    _require_positive(data.synthetic.train_size, "data.synthetic.train_size")
    _require_positive(data.synthetic.test_size, "data.synthetic.test_size")
    if params.model.arch not in ARCHITECTURES:
        raise UserError(f"model.arch = {params.model.arch!r} is invalid: use one of {', '.join(ARCHITECTURES)}")
    if not params.model.weights:
        raise UserError("model.weights is empty: use 'imagenet', 'random' or a local .pth path")
    head = params.model.head
    if head.hidden_size < 0:
        raise UserError(f"model.head.hidden_size = {head.hidden_size} is invalid: use 0 (one Linear layer) or more")
    if not 0.0 <= head.dropout < 1.0:
        raise UserError(f"model.head.dropout = {head.dropout} is invalid: use a probability in [0, 1)")
    _require_choice(params.compute.device, DEVICES, "compute.device")
    _require_choice(params.compute.precision, PRECISIONS, "compute.precision")
    _require_positive(params.compute.eval_batch_size, "compute.eval_batch_size")
    _require_positive(params.compute.nproc, "compute.nproc")
    _validate_training(params.strategy, "strategy")
    margin = params.report.equivalence_margin
    if not 0.0 < margin < 1.0:
        raise UserError(
            f"report.equivalence_margin = {margin} is invalid: use a fraction of top-1 accuracy above 0 and below 1, "
            "e.g. 0.01 (one point)"
        )


def _refuse_all_in_train_sizes(value: object) -> None:
    """A clear line for an 'all' in data.train_sizes: DVC's matrix cannot leave it out, so it is never listed."""
    if isinstance(value, list) and ALL_TRAIN_SIZE in value:
        kept = [size for size in value if size != ALL_TRAIN_SIZE]
        raise UserError(
            f"data.train_sizes = {value} is invalid: list only the smaller sizes, in images per class, e.g. {kept}; "
            "the whole training split ('all') always trains, in train@<strategy>"
        )


def _validate_train_sizes(data: DataConfig) -> None:
    """data.train_sizes: distinct whole numbers above 0 (above the smallest class's count: subset.py refuses)."""
    for index, size in enumerate(data.train_sizes):
        _require_positive(size, f"data.train_sizes[{index}]")
    _require_distinct(data.train_sizes, "data.train_sizes", "sizes")
    _require_positive(data.subset_min_steps, "data.subset_min_steps")


def _validate_training(training: TrainingConfig, key_path: str) -> None:
    """Range and choice checks for one set of training hyperparameters."""
    _validate_seeds(training.seeds, f"{key_path}.seeds")
    _require_positive(training.epochs, f"{key_path}.epochs")
    _require_positive(training.batch_size, f"{key_path}.batch_size")
    _require_choice(training.optimizer, OPTIMIZERS, f"{key_path}.optimizer")
    _require_choice(training.scheduler, SCHEDULERS, f"{key_path}.scheduler")
    _require_positive(training.lr, f"{key_path}.lr")
    if not 0.0 <= training.momentum < 1.0:
        raise UserError(f"{key_path}.momentum = {training.momentum} is invalid: use a value in [0, 1)")
    if training.weight_decay < 0:
        raise UserError(f"{key_path}.weight_decay = {training.weight_decay} is invalid: use 0 or more")
    _require_positive(training.step_epochs, f"{key_path}.step_epochs")
    if not 0.0 < training.gamma <= 1.0:
        raise UserError(f"{key_path}.gamma = {training.gamma} is invalid: use a factor in (0, 1]")


def _validate_seeds(seeds: tuple[int, ...], key_path: str) -> None:
    """A non-empty list of distinct seeds, each one valid."""
    if not seeds:
        raise UserError(f"{key_path} is empty: list at least one seed, e.g. [0]")
    for index, seed in enumerate(seeds):
        _require_seed(seed, f"{key_path}[{index}]")
    _require_distinct(seeds, key_path, "seeds")


def _require_distinct(values: tuple, key_path: str, noun: str) -> None:
    """UserError naming the first repeated value: it would train the same run twice."""
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise UserError(
            f"{key_path} = {list(values)} repeats {repeated[0]:g}: it would train the same run twice; "
            f"list distinct {noun}"
        )


def _build(cls: type, raw: object, key_path: str):
    """Instantiate dataclass cls from a mapping, converting and type-checking each field."""
    mapping = _require_mapping(raw, key_path or "params.yaml")
    hints = typing.get_type_hints(cls)
    fields = [field.name for field in dataclasses.fields(cls)]
    _reject_unknown(mapping, set(fields), key_path)
    values = {}
    for name in fields:
        child_path = f"{key_path}.{name}" if key_path else name
        if name not in mapping:
            raise UserError(f"missing key '{child_path}' in params.yaml")
        values[name] = _convert(mapping[name], hints[name], child_path)
    return cls(**values)


def _convert(value: object, expected: object, key_path: str) -> object:
    """Check value against a field type (nested dataclasses recurse); ints widen to float."""
    if dataclasses.is_dataclass(expected):
        return _build(expected, value, key_path)
    if typing.get_origin(expected) is dict:
        return dict(_require_mapping(value, key_path))
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key_path} = {value!r} is invalid: use true or false")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UserError(f"{key_path} = {value!r} is invalid: use a whole number")
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        # YAML 1.1 reads 1e-3 (no dot) as a string, a common surprise.
        hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)" if isinstance(value, str) else ""
        raise UserError(f"{key_path} = {value!r} is invalid: use a finite number{hint}")
    if typing.get_origin(expected) is tuple:
        (item_type, _ellipsis) = typing.get_args(expected)
        if not isinstance(value, (list, tuple)):  # a tuple: a shared default an override did not replace
            raise UserError(f"{key_path} = {value!r} is invalid: use a list, e.g. [0, 1, 2]")
        return tuple(_convert(item, item_type, f"{key_path}[{index}]") for index, item in enumerate(value))
    if expected is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{key_path} = {value!r} is invalid: use a string")
    raise TypeError(f"unsupported config field type {expected!r} at {key_path}")


def _require_mapping(value: object, key_path: str) -> dict:
    """value as a dict, or a UserError saying key_path must be a mapping."""
    if not isinstance(value, dict):
        raise UserError(f"{key_path} must be a mapping of keys to values, got {value!r}")
    return value


def _reject_unknown(mapping: dict, valid: set[str], key_path: str) -> None:
    """UserError for the first key not in valid, suggesting the closest valid one."""
    for key in mapping:
        if key not in valid:
            full = f"{key_path}.{key}" if key_path else str(key)
            hint = _did_you_mean(str(key), sorted(valid), key_path) or f"; valid here: {', '.join(sorted(valid))}"
            raise UserError(f"unknown key '{full}' in params.yaml{hint}")


def _did_you_mean(word: str, options, key_path: str = "") -> str:
    """'; did you mean X?' naming the closest option, or '' when none is close."""
    prefix = f"{key_path}." if key_path else ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _require_positive(value: float, key_path: str) -> None:
    """UserError unless value > 0."""
    if value <= 0:
        raise UserError(f"{key_path} = {value} is invalid: use a value above 0")


def _require_seed(seed: int, key_path: str) -> None:
    """UserError unless seed is in [0, 2**32): what numpy's SeedSequence and torch accept alike."""
    if not 0 <= seed < MAX_SEED:
        raise UserError(f"{key_path} = {seed} is invalid: use a whole number from 0 to {MAX_SEED - 1}")


def _require_choice(value: str, choices: tuple[str, ...], key_path: str) -> None:
    """UserError unless value is one of choices, listing them."""
    if value not in choices:
        raise UserError(
            f"{key_path} = {value!r} is invalid; valid: {', '.join(choices)}{_did_you_mean(value, choices)}"
        )
