"""The accelerator suite (bench/suite.py): a tiny CPU run, its time budgets, its MFU arithmetic."""
import json
import os

import jax
import jax.numpy as jnp
import pytest

from braingan.bench import common
from braingan.bench import suite


def test_mfu_of_a_known_matmul():
  n = 256
  compiled, _ = common.compile_jitted(jax.jit(lambda a, b: a @ b), jnp.ones((n, n)),
                                      jnp.ones((n, n)))
  flops = common.compiled_flops(compiled)
  assert flops == pytest.approx(2 * n ** 3, rel=0.01)      # XLA's count of a dense matmul
  assert suite.mfu(flops, 0.001, 100.0) == pytest.approx(2 * n ** 3 / 0.001 / 100e12)
  assert suite.mfu(flops, 0.001, None) is None              # unknown device: no MFU
  assert suite.peak_tflops('NVIDIA H200', 'bfloat16') == 989.0
  assert suite.peak_tflops('TFRT_CPU_0', 'float32') is None


def test_tiny_cpu_run_writes_json_and_markdown_and_stops_at_its_budget(tmp_path):
  out = str(tmp_path / 'bench')
  # 2 s for everything: the GAN part measures its first configuration, then stops.
  assert suite.main(['--out', out, '--tiny', '--budget_s', '2', '--parts', 'gan,pipeline']) == 0
  results = json.load(open(os.path.join(out, 'results.json')))
  gan = results['parts']['gan']
  assert gan['status'].startswith('stopped by its') and len(gan['rows']) == 1
  row = gan['rows'][0]
  for key in ('compile_s', 'step_s', 'images_per_s', 'peak_memory_gib', 'tflops'):
    assert row[key] is not None and row[key] > 0, key
  assert row['mfu'] is None and results['device_kind']      # CPU: achieved FLOP/s only
  assert results['parts']['pipeline']['rows'][0]['images_per_s'] > 0
  text = open(os.path.join(out, 'results.md')).read()
  assert '### gan (stopped by its' in text and '| name | compile_s | step_s' in text
