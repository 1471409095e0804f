"""churn-model: a small, end-to-end customer-churn training pipeline (KFP v2).

    make-dataset -> split-dataset -> train-model -> evaluate-model
                                          |               | accuracy >= min_accuracy ?
                                          +---------------+--> register-model

Everything is standard-library Python: the components need nothing but `kfp`
in their environment, and no network at run time. Every step is seeded, so the
same arguments always give the same data, model and metrics.

Feature columns, in the order the model (and serving/sample.json) uses:
tenure_months, monthly_charges, support_calls, month_to_month, autopay.

Validate:  kfc -C examples/churn-model validate
Run:       kfc -C examples/churn-model build-run
"""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

# Lightweight components run as plain functions inside `BASE_IMAGE`: their
# source is copied into the compiled pipeline, so each function must import
# what it uses *inside* its body and may not call module-level helpers.
BASE_IMAGE = "python:3.11-slim"


@dsl.component(base_image=BASE_IMAGE)
def make_dataset(n_samples: int, seed: int, dataset: Output[Dataset]):
    """Synthesise a telecom-style churn table as CSV.

    Churn is drawn from a known logistic model of the features, so a good
    classifier can recover it; the label noise keeps accuracy below 100 %.
    """
    import csv
    import math
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n_samples):
        tenure = rng.randint(1, 72)                      # months as a customer
        charges = round(rng.uniform(20.0, 120.0), 2)     # monthly bill
        calls = min(int(rng.expovariate(0.6)), 9)        # support calls last quarter
        month_to_month = int(rng.random() < 0.55)        # no long-term contract
        autopay = int(rng.random() < 0.45)               # pays automatically
        logit = (
            -2.0
            - 0.09 * (tenure - 36)
            + 0.04 * (charges - 70)
            + 0.7 * calls
            + 2.2 * month_to_month
            - 1.0 * autopay
        )
        churned = int(rng.random() < 1.0 / (1.0 + math.exp(-logit)))
        rows.append([tenure, charges, calls, month_to_month, autopay, churned])

    with open(dataset.path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["tenure_months", "monthly_charges", "support_calls", "month_to_month", "autopay", "churned"])
        writer.writerows(rows)

    # Artifact metadata shows up next to the artifact in the KFP UI.
    dataset.metadata["rows"] = n_samples
    dataset.metadata["churn_rate"] = round(sum(r[-1] for r in rows) / max(n_samples, 1), 4)
    print(f"wrote {n_samples} rows, churn rate {dataset.metadata['churn_rate']}")


@dsl.component(base_image=BASE_IMAGE)
def split_dataset(
    dataset: Input[Dataset],
    test_fraction: float,
    seed: int,
    train: Output[Dataset],
    test: Output[Dataset],
):
    """Shuffle (seeded) and split the table into train and test CSVs."""
    import random

    with open(dataset.path) as f:
        header, *rows = f.read().splitlines()
    random.Random(seed).shuffle(rows)
    n_test = max(1, int(round(len(rows) * test_fraction)))
    parts = {"test": (test, rows[:n_test]), "train": (train, rows[n_test:])}
    for name, (artifact, part) in parts.items():
        with open(artifact.path, "w") as f:
            f.write("\n".join([header, *part]) + "\n")
        artifact.metadata["rows"] = len(part)
        print(f"{name}: {len(part)} rows")


@dsl.component(base_image=BASE_IMAGE)
def train_model(
    train: Input[Dataset],
    learning_rate: float,
    epochs: int,
    l2: float,
    model: Output[Model],
):
    """Logistic regression by full-batch gradient descent, standard library only.

    Features are standardised with the training set's mean and standard
    deviation; both are saved with the weights so that the model is a single
    self-describing JSON document that a predictor can apply to raw features.
    """
    import csv
    import json
    import math

    with open(train.path) as f:
        reader = csv.reader(f)
        header = next(reader)
        data = [[float(v) for v in row] for row in reader]
    features, label = header[:-1], header[-1]
    xs = [row[:-1] for row in data]
    ys = [row[-1] for row in data]
    n, d = len(xs), len(features)

    means = [sum(x[j] for x in xs) / n for j in range(d)]
    stds = [math.sqrt(sum((x[j] - means[j]) ** 2 for x in xs) / n) or 1.0 for j in range(d)]
    zs = [[(x[j] - means[j]) / stds[j] for j in range(d)] for x in xs]

    def sigmoid(t: float) -> float:
        # Numerically stable for large |t|.
        return 1.0 / (1.0 + math.exp(-t)) if t >= 0 else math.exp(t) / (1.0 + math.exp(t))

    weights, bias = [0.0] * d, 0.0
    loss = float("nan")
    for epoch in range(epochs):
        grad_w, grad_b, loss = [0.0] * d, 0.0, 0.0
        for z, y in zip(zs, ys):
            p = sigmoid(bias + sum(w * v for w, v in zip(weights, z)))
            err = p - y
            grad_b += err
            for j in range(d):
                grad_w[j] += err * z[j]
            p = min(max(p, 1e-12), 1 - 1e-12)
            loss -= y * math.log(p) + (1 - y) * math.log(1 - p)
        weights = [w - learning_rate * (g / n + l2 * w) for w, g in zip(weights, grad_w)]
        bias -= learning_rate * grad_b / n
        loss /= n
        if epoch % max(1, epochs // 5) == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:4d}  train log-loss {loss:.4f}")

    with open(model.path, "w") as f:
        json.dump(
            {
                "type": "logistic_regression",
                "features": features,
                "label": label,
                "means": means,
                "stds": stds,
                "weights": weights,
                "bias": bias,
            },
            f,
            indent=2,
        )
    model.metadata["framework"] = "python-stdlib"
    model.metadata["train_rows"] = n
    model.metadata["train_log_loss"] = round(loss, 4)
    model.metadata["hyperparameters"] = {"learning_rate": learning_rate, "epochs": epochs, "l2": l2}


@dsl.component(base_image=BASE_IMAGE)
def evaluate_model(test: Input[Dataset], model: Input[Model], metrics: Output[Metrics]) -> float:
    """Score the held-out set; log the metrics and return the accuracy."""
    import csv
    import json
    import math

    with open(model.path) as f:
        m = json.load(f)
    with open(test.path) as f:
        reader = csv.reader(f)
        next(reader)
        data = [[float(v) for v in row] for row in reader]

    def predict(x: list) -> float:
        t = m["bias"] + sum(
            w * (v - mu) / sd for w, v, mu, sd in zip(m["weights"], x, m["means"], m["stds"])
        )
        return 1.0 / (1.0 + math.exp(-t))

    probs = [predict(row[:-1]) for row in data]
    ys = [int(row[-1]) for row in data]
    preds = [int(p >= 0.5) for p in probs]

    tp = sum(1 for p, y in zip(preds, ys) if p == 1 and y == 1)
    fp = sum(1 for p, y in zip(preds, ys) if p == 1 and y == 0)
    fn = sum(1 for p, y in zip(preds, ys) if p == 0 and y == 1)
    accuracy = sum(1 for p, y in zip(preds, ys) if p == y) / len(ys)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    eps = 1e-12
    log_loss = -sum(
        y * math.log(max(p, eps)) + (1 - y) * math.log(max(1 - p, eps)) for p, y in zip(probs, ys)
    ) / len(ys)

    # ROC AUC = probability that a random churner scores above a random
    # non-churner (Mann-Whitney U, ties count one half).
    pos = [p for p, y in zip(probs, ys) if y == 1]
    neg = [p for p, y in zip(probs, ys) if y == 0]
    if pos and neg:
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
        auc = wins / (len(pos) * len(neg))
    else:
        auc = float("nan")

    for name, value in [
        ("accuracy", accuracy),
        ("precision", precision),
        ("recall", recall),
        ("f1", f1),
        ("auc", auc),
        ("log_loss", log_loss),
    ]:
        metrics.log_metric(name, round(value, 4))
    metrics.log_metric("test_rows", len(ys))
    print(f"accuracy={accuracy:.4f} precision={precision:.4f} recall={recall:.4f} auc={auc:.4f} log_loss={log_loss:.4f}")
    return accuracy


@dsl.component(base_image=BASE_IMAGE)
def register_model(model: Input[Model], accuracy: float, min_accuracy: float, registered_model: Output[Model]):
    """Approve the model: publish a copy tagged with its evaluation.

    A real project would push to a model registry here; the approved artifact
    (and its metadata) is what `/deploy` would hand to KServe.
    """
    import json

    with open(model.path) as f:
        document = json.load(f)
    document["approved"] = True
    document["evaluation"] = {"accuracy": accuracy, "min_accuracy": min_accuracy}
    with open(registered_model.path, "w") as f:
        json.dump(document, f, indent=2)

    registered_model.metadata.update(model.metadata)
    registered_model.metadata["approved"] = True
    registered_model.metadata["accuracy"] = accuracy
    registered_model.metadata["source_uri"] = model.uri
    print(f"approved: accuracy {accuracy:.4f} >= {min_accuracy:.4f}")


@dsl.pipeline(
    name="churn-model",
    description="Trains and evaluates a churn classifier; registers it only when accurate enough.",
)
def churn_pipeline(
    n_samples: int = 1000,
    test_fraction: float = 0.2,
    learning_rate: float = 0.5,
    epochs: int = 200,
    l2: float = 0.001,
    seed: int = 42,
    min_accuracy: float = 0.75,
) -> float:
    data = make_dataset(n_samples=n_samples, seed=seed)
    split = split_dataset(dataset=data.outputs["dataset"], test_fraction=test_fraction, seed=seed)
    trained = train_model(
        train=split.outputs["train"], learning_rate=learning_rate, epochs=epochs, l2=l2
    )
    evaluation = evaluate_model(test=split.outputs["test"], model=trained.outputs["model"])

    # The gate: `register-model` runs only when the test accuracy (an output
    # parameter of `evaluate-model`) reaches the `min_accuracy` argument.
    # Otherwise it is skipped and the run still succeeds, without a model.
    with dsl.If(evaluation.outputs["Output"] >= min_accuracy, name="accuracy-gate"):
        register_model(
            model=trained.outputs["model"],
            accuracy=evaluation.outputs["Output"],
            min_accuracy=min_accuracy,
        )

    return evaluation.outputs["Output"]
