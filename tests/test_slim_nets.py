"""tf1_bn.patch_slim(): tf-slim's own nets, unmodified, against the real slim.

Structure: tf-slim 1.1.0's ResNet v1/v2 50 and Inception v1/v2/v3 under
their own arg scopes build the variables, collections and update ops the real
slim builds (recorded by scripts/make_slim_net_fixtures.py). Numbers: thin
ResNets train one step from the real slim's initial checkpoint and agree with
the real slim batch_norm run in a child process (tests/slim_nets_harness.py).
Then the patch itself: arg scopes, references taken before it, idempotence,
reversal, and tf1_bn without tf-slim.
"""
import ast
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import slim_nets_harness as harness
import tf1_bn
from reference import max_relative_error

tf_slim = pytest.importorskip('tf_slim')

v1 = tf.compat.v1
HERE = pathlib.Path(__file__).resolve().parent
FIXTURES = HERE / 'fixtures' / 'slim_nets'
FULL_NETS = ('resnet_v1_50', 'resnet_v2_50', 'inception_v1', 'inception_v2', 'inception_v3')
SMALL_NETS = ('resnet_v1_small', 'resnet_v2_small')
REAL_TIMEOUT_S = 300


@pytest.fixture
def patched():
  with tf1_bn.patch_slim():
    yield


def _slim_batch_norm_module():
  import importlib
  return importlib.import_module(tf1_bn.legacy.slim_patch.SLIM_LAYERS_MODULE)


# --- structure: what the real slim builds, recorded ---------------------------

def _check_structure(net, mode):
  recorded = json.loads((FIXTURES / f'{net}.json').read_text())
  with tf.Graph().as_default() as graph:
    harness.build(net, is_training=mode == 'train')
    ours = harness.describe(graph)
  for key in ('variables', 'trainable', 'model', 'moving_vars', 'regularization_losses'):
    assert ours[key] == recorded[key], key
  assert ours['update_ops'] == recorded['update_ops'][mode]


@pytest.mark.parametrize('net', FULL_NETS)
def test_full_nets_build_what_real_slim_builds_in_training(patched, net):
  _check_structure(net, 'train')


def test_full_net_builds_what_real_slim_builds_in_inference(patched):
  _check_structure('resnet_v2_50', 'infer')


# --- numbers: one training step against the real slim, live -------------------

@pytest.fixture(scope='module')
def real_runs(tmp_path_factory):
  """The real slim batch_norm's runs of the small nets (child process)."""
  pytest.importorskip('tf_keras', reason='the real slim batch_norm runs on tf-keras\'s layers')
  out = tmp_path_factory.mktemp('slim_nets')
  run = subprocess.run([sys.executable, str(HERE / 'slim_nets_harness.py'), 'real', str(out),
                        *SMALL_NETS], timeout=REAL_TIMEOUT_S, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  return out


@pytest.mark.parametrize('net', SMALL_NETS)
def test_small_nets_train_one_step_like_real_slim(real_runs, net):
  ours, structure = harness.run('tf1_bn', net, str(real_runs))  # restores real's start
  real = np.load(real_runs / f'{net}_real.npz')
  assert structure == json.loads((real_runs / f'{net}_real.json').read_text())
  assert sorted(ours) == sorted(real.files)
  for key in real.files:
    error = max_relative_error(ours[key], real[key])
    assert error <= 1e-5, f'{key}: max relative error {error:.2e}'


# --- the patch ------------------------------------------------------------------

def _moving_mean(scope='BatchNorm'):
  return [v for v in v1.global_variables() if v.op.name == scope + '/moving_mean'][0]


def _update_once(graph, y, x, data):
  with v1.Session(graph=graph) as sess:
    sess.run(v1.global_variables_initializer())
    sess.run([y, v1.get_collection(v1.GraphKeys.UPDATE_OPS)], {x: data})
    return {v.op.name: sess.run(v) for v in v1.global_variables()}


def test_arg_scope_on_either_function_is_one_entry(patched, graph, rng):
  data = rng.randn(6, 4).astype(np.float32) + 2
  x = v1.placeholder(tf.float32, [None, 4])
  with tf_slim.arg_scope([tf1_bn.batch_norm], decay=0.5, scale=True):
    direct = tf1_bn.batch_norm(x, scope='direct')
    through_slim = tf_slim.batch_norm(x, scope='through_slim')
    explicit = tf1_bn.batch_norm(x, decay=0.75, scope='explicit')  # an explicit argument wins
  with tf_slim.arg_scope([tf_slim.batch_norm], decay=0.25):
    slim_scope = tf1_bn.batch_norm(x, scope='slim_scope')
    as_normalizer = tf_slim.fully_connected(x, 3, normalizer_fn=tf1_bn.batch_norm, scope='fc')
  values = _update_once(graph, [direct, through_slim, explicit, slim_scope, as_normalizer], x,
                        data)
  for scope, decay in (('direct', 0.5), ('through_slim', 0.5), ('explicit', 0.75),
                       ('slim_scope', 0.25)):
    np.testing.assert_allclose(values[f'{scope}/moving_mean'], (1 - decay) * data.mean(0),
                               rtol=1e-6)
  assert 'direct/gamma' in values and 'slim_scope/gamma' not in values
  assert 'fc/BatchNorm/moving_mean' in values


def test_references_taken_before_the_patch_call_tf1_bn(graph):
  from tf_slim import batch_norm as taken_early  # as a model file imports it
  x = v1.placeholder(tf.float32, [None, 4, 4, 3])
  with tf1_bn.patch_slim():
    taken_early(x, is_training=False)
  # tf1_bn registers every inference transform for export; slim's never did.
  assert len(v1.get_collection(tf1_bn.bn.core.INFERENCE_RECORDS_KEY)) == 1


def test_patch_is_idempotent_and_reversible(graph):
  layers = _slim_batch_norm_module()
  original = layers.batch_norm.__closure__[0].cell_contents
  x = v1.placeholder(tf.float32, [None, 3])
  try:
    first, second = tf1_bn.patch_slim(), tf1_bn.patch_slim()
    assert first.applied and not second.applied and tf1_bn.legacy.slim_patch.slim_is_patched()
    with tf1_bn.patch_slim() as nested:  # already patched: leaves it patched on exit
      assert not nested.applied
    tf_slim.batch_norm(x)
    with tf_slim.arg_scope([tf1_bn.batch_norm], decay=0.5):
      pass
  finally:
    tf1_bn.unpatch_slim()
  tf1_bn.unpatch_slim()  # a no-op when not patched
  assert not tf1_bn.legacy.slim_patch.slim_is_patched()
  assert layers.batch_norm.__closure__[0].cell_contents is original
  assert not hasattr(tf1_bn.batch_norm, '_key_op')
  with pytest.raises(ValueError, match='not decorated with @add_arg_scope'):
    with tf_slim.arg_scope([tf1_bn.batch_norm], decay=0.5):
      pass
  with tf1_bn.patch_slim() as scoped:
    assert scoped.applied
  assert not tf1_bn.legacy.slim_patch.slim_is_patched()


def test_without_tf_slim_patch_slim_says_how_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tf_slim', None)  # find_spec then reports it missing
  with pytest.raises(ImportError, match=r'pip install tf-slim==1\.1\.0'):
    tf1_bn.patch_slim()
  assert not tf1_bn.legacy.slim_patch.slim_is_patched()


def test_tf1_bn_never_imports_tf_slim_at_import_time():
  package = pathlib.Path(tf1_bn.__file__).parent
  for path in package.glob('*.py'):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: imports inside functions are lazy
      names = []
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [node.module or '']
      assert not any(n == 'tf_slim' or n.startswith('tf_slim.') for n in names), path.name
