"""Benchmark timing helpers: alternating rounds with an untimed settle call after each switch."""
from braingan.bench import common


def test_interleaved_times_alternates_and_times_only_after_settling():
  calls = []

  def make(name):
    return lambda: calls.append(name)

  times = common.interleaved_times({'a': make('a'), 'b': make('b')}, rounds=2, per_round=3,
                                   settle=1)
  assert calls == ['a'] * 4 + ['b'] * 4 + ['a'] * 4 + ['b'] * 4   # 1 settle + 3 timed, in turn
  assert {k: len(v) for k, v in times.items()} == {'a': 6, 'b': 6}
  assert all(t >= 0.0 for v in times.values() for t in v)
