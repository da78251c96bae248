"""Validates a `sluice pipeline export` file the way each CI system reads it.

usage: validate_exports.py TARGET FILE

github, gitlab: the JSON schemas check-jsonschema vendors (SchemaStore's GitHub workflow
schema, GitLab's own CI schema). argo: Argo's Workflow model as hera generates it from Argo's
OpenAPI document, with a strict round trip (a field the model drops is reported). kubeflow:
the PipelineSpec protocol buffer of kfp-pipeline-spec (an unknown field is an error).
"""
import subprocess
import sys

import yaml

target, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    document = yaml.safe_load(f)

if target in ("github", "gitlab"):
    schema = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}[target]
    sys.exit(subprocess.call([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, path]))
elif target == "argo":
    from hera.workflows.models import Workflow

    def lost(given, kept, where="$"):
        if isinstance(given, dict):
            for key, value in given.items():
                if not isinstance(kept, dict) or key not in kept:
                    yield f"{where}.{key}"
                else:
                    yield from lost(value, kept[key], f"{where}.{key}")
        elif isinstance(given, list):
            for i, value in enumerate(given):
                other = kept[i] if isinstance(kept, list) and i < len(kept) else None
                yield from lost(value, other, f"{where}[{i}]")

    model = Workflow.model_validate(document)
    kept = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = list(lost(document, kept))
    if unknown:
        sys.exit(f"{path}: fields the Workflow model does not have: {unknown}")
    print(f"{path}: a valid Argo Workflow")
elif target == "kubeflow":
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
    print(f"{path}: a valid PipelineSpec with tasks {sorted(spec.root.dag.tasks.keys())}")
else:
    sys.exit(f"unknown target {target}")
