"""The public names of `tf.compat.v1.layers` (as in TensorFlow 2.15), built by tf1_bn.

This module is the namespace `tf1_bn.patch_layers()` installs as
`tf.compat.v1.layers`, and `tf1_bn.layers` is this module: `tf1_bn.layers.conv2d`,
`from tf1_bn.layers import Dense`. Nothing here imports Keras.
"""
import contextlib

from tf1_bn.legacy.layers_bn import batch_normalization
from tf1_bn.legacy.tf_layers.base import InputSpec, Layer
from tf1_bn.legacy.tf_layers.convolutional import (
    Conv1D, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose, SeparableConv1D, SeparableConv2D,
    conv1d, conv2d, conv2d_transpose, conv3d, conv3d_transpose, separable_conv1d,
    separable_conv2d)
from tf1_bn.legacy.tf_layers.core_layers import Dense, Dropout, Flatten, dense, dropout, flatten
from tf1_bn.legacy.tf_layers.normalization import BatchNormalization
from tf1_bn.legacy.tf_layers.pooling import (
    AveragePooling1D, AveragePooling2D, AveragePooling3D, MaxPooling1D, MaxPooling2D,
    MaxPooling3D, average_pooling1d, average_pooling2d, average_pooling3d, max_pooling1d,
    max_pooling2d, max_pooling3d)

_KERAS_STYLE_MESSAGE = (
    'tf.compat.v1.layers.experimental.{} switches the legacy layers to Keras-style variable '
    'management (no variable scopes, no reuse=); tf1_bn\'s layers keep TF1 variable scopes '
    'only. Remove the call (the layers then behave as in TF1), or port that part to Keras 3.')


class experimental:  # noqa: N801 - the legacy namespace's name
  """`tf.compat.v1.layers.experimental`: Keras-style variable management, which tf1_bn does not provide."""

  @staticmethod
  @contextlib.contextmanager
  def keras_style_scope():
    raise NotImplementedError(_KERAS_STYLE_MESSAGE.format('keras_style_scope'))
    yield  # pragma: no cover

  @staticmethod
  def set_keras_style():
    raise NotImplementedError(_KERAS_STYLE_MESSAGE.format('set_keras_style'))


__all__ = [
    'AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D', 'BatchNormalization',
    'Conv1D', 'Conv2D', 'Conv2DTranspose', 'Conv3D', 'Conv3DTranspose', 'Dense', 'Dropout',
    'Flatten', 'InputSpec', 'Layer', 'MaxPooling1D', 'MaxPooling2D', 'MaxPooling3D',
    'SeparableConv1D', 'SeparableConv2D', 'average_pooling1d', 'average_pooling2d',
    'average_pooling3d', 'batch_normalization', 'conv1d', 'conv2d', 'conv2d_transpose',
    'conv3d', 'conv3d_transpose', 'dense', 'dropout', 'experimental', 'flatten',
    'max_pooling1d', 'max_pooling2d', 'max_pooling3d', 'separable_conv1d', 'separable_conv2d',
]
