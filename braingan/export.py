"""Export a trained classifier or generator as a small inference artifact (braingan/artifact.py).

  python -m braingan.export --workdir=runs/clf --out=exports/clf [--dtype=float32|bfloat16|int8]

The run is only read (its best checkpoint for a classifier, its latest for a GAN, whose EMA
weights are exported when it kept them). The export holds weights only (no optimizer state, no
frozen/trainable split), the model and data config, the class names and order, the exact
preprocessing, provenance (checkpoint, data manifest digest, metrics) and a model card. A
ResNet50 classifier is ~98 MB in float32, ~49 MB in bfloat16 and ~24 MB in int8; the app serves
any of them (`streamlit run braingan/app.py -- --classifier=exports/clf`).
"""
from __future__ import annotations

import datetime
import os

from absl import flags

from braingan import artifact
from braingan import cli
from braingan import files

CARD = 'MODEL_CARD.md'


def _manifest_digest(run) -> str | None:
  from braingan.data import manifest as manifest_lib  # pylint: disable=import-outside-toplevel
  try:
    return manifest_lib.digest(run.manifest())
  except FileNotFoundError:
    return None


def _model_card(description: dict, kind: str) -> str:
  config = description['config']
  p = description['provenance']
  metrics = p.get('metrics') or {}
  lines = [
      f'# Model card: braingan {kind} ({description["dtype"]})', '',
      '**Research code, not a medical device.** Not validated for clinical use; its outputs must '
      'not inform any decision about a patient.', '',
      '## Intended use',
      ('Research and teaching: classifying single brain-MRI slices into '
       f'{", ".join(description["classes"])}, and inspecting what the model looks at.'
       if kind == 'classifier' else
       'Research: generating labelled synthetic brain-MRI slices to study data augmentation.'),
      '', '## Data',
      f'Trained on `{config["data"]["data_dir"]}` (data manifest digest '
      f'{p.get("manifest_digest")}), fraction {config["data"].get("fraction", 1.0)} of its '
      f'training split; {description["preprocessing"]["image_size"]} px, '
      f'{description["preprocessing"]["channels"]} channel(s), resize '
      f'"{description["preprocessing"]["resize"]}". The public Kaggle set this project uses has '
      'duplicates and reported label noise (glioma); one source population.', '',
      '## Metrics (validation split of the training data)',
      ', '.join(f'{k} {v:.4g}' for k, v in metrics.items() if isinstance(v, (int, float)))
      or 'not recorded', '',
      'Confidence intervals and comparisons are in the study report (`python -m braingan.study`).',
      '', '## Limitations',
      '- One data set from public sources; performance on other scanners, protocols and '
      'populations is unknown.',
      '- Single 2-D slices only; no patient-level or 3-D context.',
      f'- Stored as {description["dtype"]}: int8 and bfloat16 exports approximate the float32 '
      'weights (measured agreement in the README).', '',
      '## Provenance',
      f'Run `{p.get("run")}`, checkpoint epoch {p.get("epoch")} / step {p.get("step")}, '
      f'exported {p.get("exported")}.', '']
  return '\n'.join(lines)


def export(workdir: str, out: str, dtype: str = 'float32') -> dict:
  """Writes the export of run `workdir` into `out`; returns its description."""
  from braingan import inference  # pylint: disable=import-outside-toplevel
  from braingan import models  # pylint: disable=import-outside-toplevel
  from braingan.run_dir import RunDir  # pylint: disable=import-outside-toplevel
  run = RunDir(workdir)
  config = run.read_config()
  kind = 'generator' if models.family(config) == 'gan' else 'classifier'
  if kind == 'classifier':
    model = inference.load_classifier(workdir)
    meta, variables = model.meta, model.variables
    metrics = (files.read_json(run.final_metrics) if os.path.exists(run.final_metrics)
               else meta.get('metrics', {}))
    metrics = {k: metrics[k] for k in ('val_accuracy', 'val_loss', 'val_count', 'best_epoch')
               if k in metrics}
  else:
    model = inference.load_generator(workdir)
    meta, variables = model.meta, model.variables
    metrics = {k: v for k, v in meta.get('metrics', {}).items() if isinstance(v, (int, float))}
  provenance = {'run': os.path.abspath(workdir), 'epoch': meta.get('epoch'),
                'step': meta.get('step'), 'manifest_digest': _manifest_digest(run),
                'metrics': metrics,
                'weights': ('ema' if kind == 'generator' and config.ema.decay > 0 else 'model'),
                'exported': datetime.date.today().isoformat()}
  description = artifact.save(out, kind=kind, config=config, variables=variables, dtype=dtype,
                              provenance=provenance)
  files.write_text(os.path.join(out, CARD), _model_card(description, kind))
  return description


def main(argv):
  del argv
  f = flags.FLAGS
  cli.start(f)
  description = export(f.workdir, f.out, f.dtype)
  size = os.path.getsize(os.path.join(f.out, artifact.WEIGHTS))
  print(f'Exported the {description["kind"]} of {f.workdir} to {f.out} '
        f'({description["dtype"]}, weights {size / 1e6:.1f} MB).')


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A finished training run.', required=True)
  flags.DEFINE_string('out', None, 'Folder to write the export into.', required=True)
  flags.DEFINE_enum('dtype', 'float32', list(artifact.DTYPES), 'How weights are stored.')
  cli.define_flags()
  cli.run(main)
