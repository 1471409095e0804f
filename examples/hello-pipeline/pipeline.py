"""hello-pipeline: a small, real Kubeflow pipeline (KFP v2, lightweight Python components).

Compile:   kfc -C examples/hello-pipeline compile
Validate:  kfc -C examples/hello-pipeline validate
"""
from typing import NamedTuple

from kfp import dsl


@dsl.component(base_image="python:3.11-slim")
def greet(name: str, times: int = 1) -> str:
    """Say hello `times` times."""
    return " ".join([f"Hello {name}!"] * times)


@dsl.component(base_image="python:3.11-slim")
def measure(text: str, scale: float = 1.0) -> NamedTuple("Stats", [("length", int), ("score", float)]):
    """Length of the greeting and a scaled score."""
    from collections import namedtuple

    stats = namedtuple("Stats", ["length", "score"])
    return stats(len(text), len(text) * scale)


@dsl.component(base_image="python:3.11-slim")
def report(text: str, length: int, score: float) -> str:
    """One line summarising the run."""
    line = f"{text!r}: length={length}, score={score}"
    print(line)
    return line


@dsl.pipeline(name="hello-pipeline", description="Greets, measures the greeting and reports.")
def hello_pipeline(name: str = "world", times: int = 2, scale: float = 1.0) -> str:
    greeting = greet(name=name, times=times)
    stats = measure(text=greeting.output, scale=scale)
    summary = report(text=greeting.output, length=stats.outputs["length"], score=stats.outputs["score"])
    return summary.output
