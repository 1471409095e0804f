"""Run a compiled pipeline with kfp.local (SubprocessRunner, use_venv=False): the benchmark anchor.

Usage: python kfp_local_run.py PIPELINE.yaml PIPELINE_ROOT [name=json_value ...]
"""
import json
import sys

from kfp import components, local


def main() -> None:
    path, root, *pairs = sys.argv[1:]
    args = {k: json.loads(v) for k, v in (p.split("=", 1) for p in pairs)}
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    pipeline = components.load_component_from_file(path)
    pipeline(**args)


if __name__ == "__main__":
    main()
