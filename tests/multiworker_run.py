"""Two MultiWorkerMirroredStrategy workers on loopback, each a process.

`python multiworker_run.py OUT` starts both workers and waits for them;
each builds a synchronized bn_layer on its one replica (the data of
synchronized_cases.test_multi_worker_two_processes_on_loopback), runs one
training step and writes OUT/worker<task>.npz.
"""
import json
import os
import socket
import subprocess
import sys
import time

# Both workers together; the caller (synchronized_cases) waits 240 s.
WORKER_TIMEOUT_S = 200


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _worker(out, task, ports):
  cluster = {'worker': [f'127.0.0.1:{p}' for p in ports]}
  os.environ['TF_CONFIG'] = json.dumps({'cluster': cluster,
                                        'task': {'type': 'worker', 'index': task}})
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import numpy as np
  import tensorflow as tf
  import replicated
  import tf1_bn
  tf1_bn.set_collective_timeout(60)
  v1 = tf.compat.v1
  rng = np.random.RandomState(6)
  batches = [(rng.randn(size, 4, 4, 5) * 3.0 + 1.5).astype(np.float32) for size in (3, 2)]
  dys = [rng.randn(*b.shape).astype(np.float32) for b in batches]
  config = v1.ConfigProto(inter_op_parallelism_threads=replicated.INTER_OP_THREADS)
  with tf.Graph().as_default():
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    config = strategy.update_config_proto(config)
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name='worker',
                                  task_index=task, protocol='grpc', config=config, start=True)
  result = replicated.run('multiworker', 'bn_layer', batches, dys, target=server.target,
                          config=config)
  values = dict(result['replicas'][0])
  values.update({name.replace('/', '__'): copies[0] for name, copies in
                 result['moving'].items()})
  np.savez(os.path.join(out, f'worker{task}.npz'), **values)


def main(out):
  ports = _free_ports(2)
  workers = [subprocess.Popen([sys.executable, __file__, out, str(task), ','.join(map(str, ports))])
             for task in range(2)]
  # One deadline for both, below the caller's timeout, and no worker left
  # behind whatever happens (a worker waiting for its peer never returns).
  deadline = time.monotonic() + WORKER_TIMEOUT_S
  codes = []
  try:
    for worker in workers:
      try:
        codes.append(worker.wait(timeout=max(0.0, deadline - time.monotonic())))
      except subprocess.TimeoutExpired:
        codes.append('timeout')
  finally:
    for worker in workers:
      if worker.poll() is None:
        worker.kill()
        worker.wait()
  if codes != [0, 0]:
    sys.exit(f'workers exited with {codes}')


if __name__ == '__main__':
  if len(sys.argv) == 4:
    _worker(sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3].split(',')])
  else:
    main(sys.argv[1])
