# Helpers shared by the rules: artifact paths, model names, per-rule parameter slices of the config.
# Each rule's params hold only what that rule needs, so a changed value re-runs that stage and what follows.

import os
import re
import sys

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The configuration is checked against workflow/schemas/config.schema.yaml before the rules read it;
# nested --config values arrive as strings (Snakemake parses only the top level), so they are converted where the
# schema wants a number or a boolean; a refused value is reported in one line naming its key.


def _schema_node(schema, node):
    """`node` with its $ref (into the same file) and allOf parts resolved into one {properties, type, items}."""
    if "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if "allOf" in node:
        merged = {"properties": dict(node.get("properties", {}))}
        for part in node["allOf"]:
            part = _schema_node(schema, part)
            merged["properties"].update(part.get("properties", {}))
        node = {**node, **merged}
    return node


def _coerce(value, node, schema):
    """`value` with strings turned into the numbers/booleans the schema asks for (anything else left as it is)."""
    node = _schema_node(schema, node)
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, dict):
        props = node.get("properties", {})
        return {
            k: _coerce(v, props[k], schema) if k in props else v
            for k, v in value.items()
        }
    if isinstance(value, list) and "items" in node:
        return [_coerce(v, node["items"], schema) for v in value]
    if isinstance(value, str):
        if "boolean" in types and value.lower() in ("true", "false"):
            return value.lower() == "true"
        for kind, cast in (("integer", int), ("number", float)):
            if kind in types:
                try:
                    return cast(value)
                except ValueError:
                    pass
        if value.lower() in ("null", "none") and "null" in types:
            return None
    return value


def _all_errors(errors):
    for error in errors:
        yield error
        yield from _all_errors(error.context or [])


def validate_config(config, schema_path):
    """Checks `config` against the schema (numbers and booleans converted first); returns the schema."""
    with open(schema_path) as f:
        schema = yaml.safe_load(f)
    config.update(_coerce(dict(config), schema, schema))
    try:
        validate(config, schema_path)
    except WorkflowError as e:
        if not isinstance(e.__context__, jsonschema.ValidationError):
            raise
        # The most specific error: a bad value inside a section also makes the section "unevaluated".
        errors = list(
            _all_errors(jsonschema.Draft202012Validator(schema).iter_errors(config))
        )
        errors = [x for x in errors if x.validator != "unevaluatedProperties"] or errors
        error = max(errors, key=lambda x: len(x.absolute_path), default=e.__context__)
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise WorkflowError(
            f"config {key}: {error.message} (config/README.md lists every key)"
        ) from None
    return schema


def documented_default(schema, section, key):
    """The schema's x-default of config[section][key]: what the library uses when the key is left out."""
    node = _schema_node(schema, schema["properties"][section])
    return node["properties"][key]["x-default"]


SCHEMA = validate_config(
    config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
)

# Inside a Slurm job, Slurm's `--signal=USR1@secs` (slurm/config.yaml) and `scancel --signal=USR1` reach every process
# of the job's steps, this Snakemake included. Only the training acts on it (it saves its state and exits 75);
# Snakemake has no handler and would die of it, failing a job whose training had already finished. Ignored here;
# the rules' processes inherit that, and the training installs its own handler (docs/CLUSTER.md, "Pre-emption").
if "SLURM_JOB_ID" in os.environ:
    import signal

    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


# The rules' scripts import the library from src/ whether or not it is installed (e.g. inside a conda env); set
# here, not required from the user, so it is no `envvars:` entry. Jobs inherit it (Slurm jobs too: sbatch exports
# the environment).
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        p
        for p in (os.path.join(workflow.basedir, "src"), os.environ.get("PYTHONPATH"))
        if p
    )
)


def canonical(value):
    """Dicts with their keys sorted, recursively: Snakemake compares a rule's params by repr, so a config file with the
    same values in another key order must give the same params (and re-run nothing)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
# the shared jobs' logs (toy, index, summary_seeds, plot_seeds)
LOGS = f"{RESULTS}/logs"
# Seeds (config seeds): one run of the pipeline per entry. With two or more, each seed's artifacts live under
# RESULTS/seed{s}/: the wildcard {seed_dir} is "seed{s}/" in every seed-dependent path, "" for a single run and for
# what the seeds share; one pattern serves both, so a single run keeps its paths (docs/ARCHITECTURE.md, "Several seeds").
SEEDS = config.get("seeds")
MULTI_SEED = bool(SEEDS) and len(SEEDS) > 1
SEED_DIRS = [f"seed{s}/" for s in SEEDS] if MULTI_SEED else [""]
RUN = f"{RESULTS}/{{seed_dir}}"  # the prefix of a seed-dependent output pattern
RUN_LOGS = f"{RUN}logs"
SEED_SUMMARIES = [
    f"{RESULTS}/{sd}summary.csv" for sd in SEED_DIRS
]  # summary_seeds' and plot_seeds' inputs
# A given pretrain.checkpoint is adopted, not trained: no seed affects it, so the pretrained model and what is made
# from it alone (its inference, entropy maps, round-1 pseudo-labels, evaluation, plots) are made once for all seeds.
PRETRAIN_SEEDED = not config["pretrain"].get("checkpoint")
ENV = "../../envs/esl.yaml"
METHODS = list(config["pseudo_labels"]["methods"])
ROUNDS = int(config["selftrain"]["rounds"])
SELFTRAINED = [f"{m}_r{k}" for m in METHODS for k in range(1, ROUNDS + 1)]
MODELS = ["pretrain"] + SELFTRAINED
# target_test: the target split config export.split names, indexed for rule `export` only (export.smk)
SPLITS = ["source_train", "target_train", "target_val", "target_test"]
# Which model of a stage feeds the next one (pseudo_labels.from, selftrain.init_from); docs/ARCHITECTURE.md.
LABELS_FROM = config["pseudo_labels"].get("from", "final")
INIT_FROM = config["selftrain"].get("init_from", "final")
SELECTION = config["evaluate"].get("selection", "entropy")


MODEL_PATTERN = r"pretrain|[a-z]+_r\d+"


wildcard_constraints:
    seed_dir=f"(?:{'|'.join(SEED_DIRS)})?" if MULTI_SEED else "(?:)",  # (?:): empty only
    model=MODEL_PATTERN,
    method=r"[a-z]+",
    k=r"\d+",
    split="|".join(SPLITS),


def toy_manifest():
    """The toy generator's completion marker, when the default toy data is in use."""
    toy = config.get("toy")
    return [f"{toy['root']}/manifest.csv"] if toy else []


def seed_dir_of(model, seed_dir):
    """The {seed_dir} of `model`'s artifacts (and of the pseudo-labels made from it) in the run `seed_dir`: "" for a
    pretrained model no seed affects (shared by the seeds)."""
    return seed_dir if PRETRAIN_SEEDED or model != "pretrain" else ""


def at(model, seed_dir):
    """The results prefix of `model`'s artifacts in the run `seed_dir` (an input function's wc.seed_dir)."""
    return f"{RESULTS}/{seed_dir_of(model, seed_dir)}"


def own_seed_dir(model, seed_dir):
    """`seed_dir` of a job of `model` itself (its inference, evaluation, export); a seed's copy of a model the seeds
    share is refused (it would redo their shared work under seed{s}/)."""
    if seed_dir_of(model, seed_dir) != seed_dir:
        raise WorkflowError(
            f"{model} is shared by the seeds (a given pretrain.checkpoint, which no seed affects): its artifacts are"
            f" in {RESULTS}/, not {RESULTS}/{seed_dir}; ask for them there"
        )
    return seed_dir


def own(model, seed_dir):
    """The results prefix of a job of `model` itself (own_seed_dir)."""
    return f"{RESULTS}/{own_seed_dir(model, seed_dir)}"


def run_seed(seed_dir):
    """The run seed of `seed_dir`: its entry of config seeds; None without config seeds (the sections' own seeds)."""
    if seed_dir:
        return int(seed_dir.removeprefix("seed").removesuffix("/"))
    if MULTI_SEED:
        raise WorkflowError(
            f"config seeds={SEEDS}: the seed-dependent artifacts are made under {RESULTS}/seed<s>/, not in"
            f" {RESULTS}/; ask for e.g. {RESULTS}/seed{SEEDS[0]}/summary.csv"
        )
    return SEEDS[0] if SEEDS else None


def train_params(section, seed_dir):
    """config[section] (pretrain | selftrain) for the run `seed_dir`: `seed` set to the run seed (a given
    pretrain.checkpoint keeps the section as it is: no seed affects it)."""
    train = canonical(config[section])
    if section == "pretrain" and not PRETRAIN_SEEDED:
        return train
    seed = run_seed(seed_dir)
    # The seed the section runs with anyway is not written in: `seeds: [1234]` over a config that leaves `seed` to
    # its default plans the same params as no `seeds`, and re-runs nothing.
    default = documented_default(SCHEMA, section, "seed")
    if seed is None or seed == train.get("seed", default):
        return train
    return canonical({**train, "seed": seed})


def model_dir(model, run=RUN):
    """`run`: a results prefix, RUN in output patterns, at(model, wc.seed_dir) in input functions."""
    return f"{run}pretrain" if model == "pretrain" else f"{run}selftrain/{model}"


def checkpoint_path(model, run=RUN):
    return f"{model_dir(model, run)}/model.pt"


def stage_section(model):
    return config["pretrain"] if model == "pretrain" else config["selftrain"]


def final_iteration(model):
    """Iterations of the final model; None for a given checkpoint (pretrain.checkpoint)."""
    section = stage_section(model)
    if model == "pretrain" and section.get("checkpoint"):
        return None
    return int(section["iters"])


def snapshot_iterations(model):
    """Iterations with a snapshot: multiples of snapshot_every below iters (esl.stages.snapshots.snapshot_iterations)."""
    every = int(stage_section(model).get("snapshot_every") or 0)
    last = final_iteration(model)
    return list(range(every, last, every)) if every > 0 and last else []


def snapshot_paths(model, run=RUN):
    """Also with wildcards: snapshot_paths("{method}_r{k}") are the selftrain rule's outputs."""
    return [
        f"{model_dir(model, run)}/snapshots/iter_{i:06d}.pt"
        for i in snapshot_iterations(model)
    ]


def named_snapshot_paths(model):
    """The same, each under its own name (a cached rule's outputs must all be named)."""
    return {
        f"snapshot_{i:06d}": path
        for i, path in zip(snapshot_iterations(model), snapshot_paths(model))
    }


def candidates(model, run):
    """(iteration, checkpoint) of every model a choice picks from: the snapshots, then the final model."""
    return list(zip(snapshot_iterations(model), snapshot_paths(model, run))) + [
        (final_iteration(model), checkpoint_path(model, run))
    ]


def candidate_iterations(model):
    """The iterations of candidates(model): the snapshots', then the final model's."""
    return snapshot_iterations(model) + [final_iteration(model)]


def has_snapshots(model):
    return bool(snapshot_iterations(model))


def chosen_checkpoint(model, choice, seed_dir):
    """The checkpoint `choice` (final | selected | best) of `model` stands for in the run `seed_dir`."""
    run = at(model, seed_dir)
    if choice == "final" or not has_snapshots(model):
        return checkpoint_path(model, run)
    return f"{run}chosen/{model}_{choice}.pt"


for _key, _choice in (
    ("pseudo_labels.from", LABELS_FROM),
    ("selftrain.init_from", INIT_FROM),
):
    if _choice != "final" and not has_snapshots("pretrain"):
        print(
            f"WARNING: config {_key}={_choice!r} but pretrain keeps no snapshots (pretrain.snapshot_every, or a"
            " given pretrain.checkpoint): its final model is used",
            file=sys.stderr,
        )

if "best" in (LABELS_FROM, INIT_FROM):
    print(
        "WARNING: pseudo_labels.from or selftrain.init_from is 'best': the model chosen on target-val labels then"
        " shapes training (the reference's protocol, optimistic); use 'selected' for a label-free choice",
        file=sys.stderr,
    )


def ensembles():
    """evaluate.ensembles, checked: name -> {models, weights}; one-line errors naming the key."""
    out = {}
    for i, e in enumerate(config["evaluate"].get("ensembles") or []):
        key = f"config evaluate.ensembles[{i}]"
        name, members = e["name"], list(e["models"])
        weights = list(e.get("weights") or [1.0] * len(members))
        if (
            re.fullmatch(MODEL_PATTERN, name)
            or name.endswith("_snapshots")
            or name in out
        ):
            raise ValueError(
                f"{key}.name={name!r} is a model's name, ends in _snapshots or is used twice; choose another"
            )
        if len(weights) != len(members):
            raise ValueError(
                f"{key}.weights has {len(weights)} values for {len(members)} models; give one weight per model"
            )
        for m in members:
            if m not in MODELS and not os.path.isfile(m):
                raise ValueError(
                    f"{key}.models: {m!r} is neither a model of this experiment ({', '.join(MODELS)}) nor an existing"
                    " checkpoint file"
                )
        out[name] = {"models": members, "weights": weights}
    return out


ENSEMBLES = ensembles()


def labels_home(labels, seed_dir):
    """The results prefix of the pseudo-label set `labels` ({method}_r{k}): its source model's (previous_model)."""
    method, k = labels.rsplit("_r", 1)
    return at(previous_model(method, k), seed_dir)


def seed_labels(labels):
    """A report item's labels, with its run (seed_dir) when there are several seeds, so the report tells them apart."""
    return {**labels, "run": "{seed_dir}"} if MULTI_SEED else labels


def member_checkpoint(member, seed_dir):
    return checkpoint_path(member, at(member, seed_dir)) if member in MODELS else member


def previous_model(method, k):
    """Round k pseudo-labels come from the model of round k-1 (round 0 is the pretrained model)."""
    k = int(k)
    return "pretrain" if k == 1 else f"{method}_r{k - 1}"


def split_params(split):
    """Where a split lives: layout, root, split name, optional list file (the target: and its conditions)."""
    data = config["data"]
    if split == "source_train":
        d = data["source"]
        return dict(
            layout=d["layout"],
            root=d["root"],
            split=d["split"],
            list_file=d.get("list_file"),
        )
    d = data["target"]
    name = d["train_split"] if split == "target_train" else d["val_split"]
    list_file = d.get(f"{split}_list")
    if split == "target_test":  # rule export only (e.g. an unlabelled test split)
        export = config.get("export") or {}
        name, list_file = export.get("split", "test"), export.get("list_file")
    out = dict(layout=d["layout"], root=d["root"], split=name, list_file=list_file)
    # acdc, dark_zurich: absent lists the layout's default conditions (and adds no key: no re-run)
    if d.get("conditions") is not None:
        out["conditions"] = list(d["conditions"])
    return out


def dataset_fingerprint(split):
    """The state of a split's files (esl.io.layouts.fingerprint: paths, sizes and mtimes, no contents read), the index
    rule's param: a file edited, added or deleted re-indexes the split, and what follows re-runs. Toy data that rule
    `toy` generates (a root under toy.root) are measured against its manifest, so the hash is the same before they
    exist (when Snakemake first plans the index) as after, in any folder: the default re-runs nothing.
    """
    # src/ first, as in the jobs' PYTHONPATH; esl.io.layouts needs only the standard library
    src = os.path.join(workflow.basedir, "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    from esl.io.layouts import fingerprint

    d = split_params(split)
    toy = config.get("toy")
    manifest = None
    if toy:
        top, root = os.path.abspath(toy["root"]), os.path.abspath(d["root"])
        if os.path.commonpath([top, root]) == top:
            manifest = toy_manifest()[0]
    return fingerprint(
        d["layout"],
        d["root"],
        d["split"],
        d.get("list_file"),
        manifest,
        conditions=d.get("conditions"),
    )


def input_params(domain):
    """What turns a sample into a network input: layout, input size, mean, class count."""
    data = config["data"]
    d = data[domain]
    return dict(
        layout=d["layout"],
        size=list(d["size"]),
        mean_bgr=list(data["mean_bgr"]),
        num_classes=data["num_classes"],
    )


def model_params():
    return canonical(config["model"])
