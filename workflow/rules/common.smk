# Helpers shared by the rules: artifact paths, model names, per-rule parameter slices of the config.
# Each rule's params hold only what that rule needs, so a changed value re-runs that stage and what follows.

import os

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

EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
LOGS = f"{RESULTS}/logs"
ENV = "../../envs/esl.yaml"
METHODS = list(config["pseudo_labels"]["methods"])
ROUNDS = int(config["selftrain"]["rounds"])
SELFTRAINED = [f"{m}_r{k}" for m in METHODS for k in range(1, ROUNDS + 1)]
MODELS = ["pretrain"] + SELFTRAINED
SPLITS = ["source_train", "target_train", "target_val"]


wildcard_constraints:
    model=r"pretrain|[a-z]+_r\d+",
    method=r"[a-z]+",
    k=r"\d+",
    split="|".join(SPLITS),


def toy_manifest():
    """The toy generator's completion marker, when the default toy data is in use."""
    toy = config.get("toy")
    return [f"{toy['root']}/manifest.csv"] if toy else []


def checkpoint_path(model):
    if model == "pretrain":
        return f"{RESULTS}/pretrain/model.pt"
    return f"{RESULTS}/selftrain/{model}/model.pt"


def previous_model(method, k):
    """Round k pseudo-labels come from the model of round k-1 (round 0 is the pretrained model)."""
    k = int(k)
    return "pretrain" if k == 1 else f"{method}_r{k - 1}"


def split_params(split):
    """Where a split lives: layout, root, split name, optional list file."""
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
    return dict(
        layout=d["layout"], root=d["root"], split=name, list_file=d.get(f"{split}_list")
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
    return dict(config["model"])
