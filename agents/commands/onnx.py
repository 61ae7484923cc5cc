"""``wmsim export-onnx``: write a bundle's ONNX graphs for the onnxruntime dream backend."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    from wmsim.onnx_format import DEFAULT_OPSET

    p = sub.add_parser(
        "export-onnx",
        help="export a bundle's world model (and policy) to ONNX for the onnxruntime dream backend",
        description="Write transition.onnx (latent step + reward and termination heads), posterior.onnx"
        " (encoder + posterior step), decoder.onnx and, when the bundle has a policy, policy.onnx into"
        " BUNDLE_DIR/onnx and record them in BUNDLE_DIR/config.json. A multi-task bundle gets one set"
        " per task (BUNDLE_DIR/onnx/<task>/, the model bound to the task: its real observation and action"
        " sizes). Each graph is checked with onnx.checker and compared with torch before it is kept. Then"
        " make the dream with backend='onnxruntime' (and task=... for a multi-task bundle; torch is not"
        " needed there).",
    )
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="a bundle directory (or a known model name)")
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="write the graphs and an onnx.json record here instead, leaving the bundle untouched"
        " (then pass onnx_dir=DIR to the onnxruntime backend)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-policy", action="store_true", help="skip the policy graph")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch comparison")
    return {"export-onnx": run}


def run(args: argparse.Namespace) -> int:
    from wmsim.bundle_format import read_bundle_config
    from wmsim.onnx_export import export_onnx, format_record, record_path
    from wmsim.registry import resolve_model_dir

    from ..dreamerv2.agent import POLICY_KIND
    from ..onnx_policy import policy_module

    bundle_dir = resolve_model_dir(args.bundle)
    exporter = None if args.no_policy else policy_module
    policy = read_bundle_config(bundle_dir).get("policy")
    kind = policy.get("kind") if isinstance(policy, dict) else None
    if exporter is not None and kind is not None and kind != POLICY_KIND:
        print(
            f"the bundle's policy is of kind {kind!r}, which has no policy graph yet: exporting the"
            " world model's graphs only"
        )
        exporter = None
    record = export_onnx(
        bundle_dir,
        args.out,
        opset=args.opset,
        policy_exporter=exporter,
        verify=not args.no_verify,
    )
    print(format_record(record))
    location = record_path(bundle_dir, args.out)
    hint = f" (pass onnx_dir={args.out!r})" if location.name == "onnx.json" else ""
    task = ", task=..." if "tasks" in record else ""
    print(f"recorded in {location}{hint}; dream with gym.make(..., backend='onnxruntime'{task})")
    return 0
