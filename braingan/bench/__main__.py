"""python -m braingan.bench data|gan|classifier|scaling|export|suite [options]: benchmarks.

Each sub-command lives in its own module (imported lazily, so the GAN benchmark does not
import the classifier's dependencies and vice versa) and exposes `main(argv) -> int`.
"""
import importlib
import sys

from braingan.runtime import hostmem

BENCHMARKS = {'data': 'braingan.bench.data', 'gan': 'braingan.bench.gan',
              'classifier': 'braingan.bench.classifier', 'scaling': 'braingan.bench.scaling',
              'export': 'braingan.bench.export', 'suite': 'braingan.bench.suite',
              'compile_cache': 'braingan.bench.compile_cache'}


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] not in BENCHMARKS:
    print(f'usage: python -m braingan.bench {{{"|".join(BENCHMARKS)}}} [--json] [options]',
          file=sys.stderr)
    return 2
  from braingan import cli  # pylint: disable=import-outside-toplevel
  cli.quiet_libraries()   # no TFDS/TF chatter; the compilation cache stays off (compile times)
  module = importlib.import_module(BENCHMARKS[argv[0]])
  return int(module.main(argv[1:]) or 0)


if __name__ == '__main__':
  hostmem.ensure_hugepage_malloc()  # same allocator for ours and the reference (hostmem.py)
  sys.exit(main())
