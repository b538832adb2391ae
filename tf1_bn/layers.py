"""`tf1_bn.layers`: the `tf.compat.v1.layers` namespace built by tf1_bn.

`import tf1_bn.layers`, `from tf1_bn.layers import conv2d` and
`tf1_bn.layers.Dense` all reach `tf1_bn.legacy.tf_layers.namespace`, the
module `tf1_bn.patch_layers()` installs as `tf.compat.v1.layers`.
"""
import sys

from tf1_bn.legacy.tf_layers import namespace as _namespace

sys.modules[__name__] = _namespace
