"""Export sizes and fidelity: python -m braingan.bench export --workdir=RUN [--json]

Exports the classifier of RUN (its best checkpoint) as float32, bfloat16 and int8, and prints
each weights file's size, the top-1 agreement of its predictions with the float32 model's and
its accuracy, on the run's held-out images (its test split, else validation). Prints figures;
asserts nothing (the targets are in the README and the closing notes).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile


def main(argv) -> int:
  parser = argparse.ArgumentParser(prog='python -m braingan.bench export')
  parser.add_argument('--workdir', required=True, help='a finished classifier run')
  parser.add_argument('--out', default='', help="where to keep the exports ('' = temporary)")
  parser.add_argument('--json', action='store_true')
  args = parser.parse_args(argv)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from braingan import artifact, export, inference  # pylint: disable=import-outside-toplevel
  from braingan.data import manifest as manifest_lib  # pylint: disable=import-outside-toplevel
  from braingan.eval import inputs  # pylint: disable=import-outside-toplevel
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  run = RunDir(args.workdir)
  reference = inference.load_classifier(args.workdir)
  manifest = run.manifest()
  split = ('test' if any(r.split == 'test' for r in manifest_lib.read(manifest))
           else 'validation')
  held_out = inputs.from_manifest(manifest, split, reference.config.data)
  base = inputs.batched(reference.probs, held_out.images, 64).argmax(-1)
  out = args.out or tempfile.mkdtemp(prefix='braingan_export_')
  result = {'run': args.workdir, 'split': split, 'images': len(held_out),
            'parameters': int(sum(np.size(x) for x in
                                  __import__('jax').tree.leaves(reference.variables)))}
  for dtype in artifact.DTYPES:
    folder = os.path.join(out, dtype)
    export.export(args.workdir, folder, dtype)
    model = inference.load_classifier(folder)
    pred = inputs.batched(model.probs, held_out.images, 64).argmax(-1)
    result[dtype] = {'weights_mb': os.path.getsize(os.path.join(folder, artifact.WEIGHTS)) / 1e6,
                     'agreement_with_float32': float(np.mean(pred == base)),
                     'accuracy': float(np.mean(pred == held_out.labels))}
  if args.json:
    print(json.dumps(result))
  else:
    print(f'{result["run"]}: {result["parameters"]:,} variables, {result["images"]} {split} '
          'images')
    for dtype in artifact.DTYPES:
      r = result[dtype]
      print(f'  {dtype:9s} {r["weights_mb"]:7.1f} MB  agreement with float32 '
            f'{100 * r["agreement_with_float32"]:6.2f} %  accuracy {100 * r["accuracy"]:6.2f} %')
  return 0
