"""The scaling benchmark's arithmetic and table (the measurement itself is `python -m
braingan.bench scaling`; it compiles full models, far too slow for a unit test)."""
import pytest

from braingan.bench import scaling


def _row(model, devices, step_s, gflop_per_step=None):
  return {'model': model, 'dtype': 'float32', 'devices': devices, 'global_batch': 4 * devices,
          'compile_s': 1.0, 'step_s': step_s, 'step_times_s': [step_s],
          'images_per_s': 4 * devices / step_s, 'gflop_per_step': gflop_per_step}


def test_derived_columns_shared_and_separate_devices():
  rows = [_row('gan', 1, 0.5, 10.0), _row('gan', 2, 0.5, 20.0), _row('gan', 4, 2.0, 40.0)]
  scaling.add_derived(rows, {'float32': 100.0}, shared_cores=False)
  assert [r['speedup'] for r in rows] == [1.0, 2.0, 1.0]
  assert [r['efficiency'] for r in rows] == [1.0, 1.0, 0.25]
  assert [r['achieved_gflops'] for r in rows] == [20.0, 40.0, 20.0]
  # Separate devices (GPUs): the ceiling is N x the per-device peak.
  assert [r['pct_of_peak'] for r in rows] == pytest.approx([20.0, 20.0, 5.0])
  scaling.add_derived(rows, {'float32': 100.0}, shared_cores=True)
  assert [r['pct_of_peak'] for r in rows] == pytest.approx([20.0, 40.0, 20.0])


def test_missing_flops_and_missing_baseline_give_none():
  rows = [_row('classifier', 2, 1.0)]
  scaling.add_derived(rows, {'float32': 50.0}, shared_cores=True)
  assert rows[0]['speedup'] is None and rows[0]['efficiency'] is None
  assert rows[0]['achieved_gflops'] is None and rows[0]['pct_of_peak'] is None


def test_table_and_args():
  rows = [_row('gan', 1, 0.5, 10.0), _row('gan', 2, 0.6, 20.0)]
  scaling.add_derived(rows, {'float32': 100.0}, shared_cores=True)
  result = {'platform': 'cpu', 'device_kind': 'cpu', 'host_cpus': 2, 'image_size': 64,
            'per_device_batch': 4, 'timed_steps': 3, 'warmup_steps': 1,
            'peak_matmul_gflops_per_device': {'float32': 100.0}, 'forced_host_devices': True,
            'skipped_device_counts': [], 'total_seconds': 12.0, 'rows': rows}
  table = scaling.format_table(result)
  assert 'img/s' in table and 'CPU note' in table
  assert table.count('\ngan ') == 2
  args = scaling.parse_args(['--devices=1,2', '--models=gan'])
  assert args.devices == [1, 2] and args.models == ['gan']
  assert scaling.resolve_dtypes('auto', 'cpu') == ['float32']
  assert scaling.resolve_dtypes('auto', 'gpu') == ['float32', 'bfloat16']
  with pytest.raises(SystemExit):
    scaling.parse_args(['--models=vae'])
