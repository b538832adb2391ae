"""`tf.compat.v1.layers` without Keras: the legacy layers on tf.compat.v1 variables and tf.nn ops.

One module per concern: `base` (the `Layer` class TF1 custom layers
subclass, `InputSpec`, scoping and naming), `args` (argument checks shared
by the layers), `core_layers` (dense, dropout, flatten), `convolutional`,
`pooling`, `normalization` (the `BatchNormalization` class), and
`namespace` (the public names, as `tf.compat.v1.layers` lists them).
"""
