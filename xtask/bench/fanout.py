"""Benchmark pipeline: four independent lightweight tasks that each sleep one second.

A runner that runs independent tasks concurrently finishes in about the time of
the slowest task; a sequential one takes the sum.
"""
from kfp import dsl


@dsl.component(base_image="python:3.11-slim")
def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@dsl.pipeline(name="bench-fanout")
def fanout(seconds: float = 1.0):
    for _ in range(4):
        nap(seconds=seconds)
