"""Times one inference of each artefact of a `tf1-bn export` OUT directory.

  python scripts/time_export.py SOURCE OUT [--input x] [--output logits]
      [--training is_training] [--data FILE.npz] [--repeats 200]

SOURCE is the .meta the export read (the original graph, run in a session
with the switch fed False); OUT holds saved_model/ and, when written,
model.tflite and model_int8.tflite. Each artefact runs the same batch
`repeats` times after a warm-up; the median of one call is printed, side by
side in one run, with the ratio to the original graph. On a loaded machine
the absolute numbers move; the ratios less so.
"""
import argparse
import os
import statistics
import time

import numpy as np


def _median_ms(function, repeats):
  function()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('source')
  parser.add_argument('out')
  parser.add_argument('--input', default='x')
  parser.add_argument('--output', default='logits')
  parser.add_argument('--training', default='is_training')
  parser.add_argument('--data')
  parser.add_argument('--repeats', type=int, default=200)
  args = parser.parse_args()
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  import tensorflow as tf
  v1 = tf.compat.v1
  x = np.load(args.data)[args.input] if args.data else None
  rows = []
  graph = tf.Graph()
  with graph.as_default():
    saver = v1.train.import_meta_graph(args.source, clear_devices=True)
    sess = v1.Session(graph=graph)
    saver.restore(sess, args.source[:-len('.meta')])
  feeds = {graph.get_tensor_by_name(args.training + ':0'): False}
  if x is None:
    shape = [2 if d is None else d for d in graph.get_tensor_by_name(
        args.input + ':0').shape.as_list()]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  feeds[graph.get_tensor_by_name(args.input + ':0')] = x
  output = graph.get_tensor_by_name(args.output + ':0')
  rows.append(('original graph (session, switch fed False)',
               _median_ms(lambda: sess.run(output, feeds), args.repeats)))
  function = tf.saved_model.load(os.path.join(args.out, 'saved_model')).signatures[
      'serving_default']
  constant = tf.constant(x)
  rows.append(('SavedModel (eager signature)',
               _median_ms(lambda: function(**{args.input: constant}), args.repeats)))
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    Interpreter = tf.lite.Interpreter
  for name in ('model.tflite', 'model_int8.tflite'):
    path = os.path.join(args.out, name)
    if os.path.exists(path):
      runner = Interpreter(model_path=path).get_signature_runner('serving_default')
      rows.append((f'TFLite {name}', _median_ms(lambda: runner(**{args.input: x}),
                                                 args.repeats)))
  base = rows[0][1]
  print(f'batch {x.shape[0]}, median of {args.repeats} calls')
  for name, ms in rows:
    print(f'{name:45s} {ms * 1e3:9.1f} us  {ms / base:5.2f}x')


if __name__ == '__main__':
  main()
