"""Independent numpy references for batch norm, dropout and moving averages."""
import numpy as np


def reduction_axes(rank, axes):
  axes = [a % rank for a in np.atleast_1d(axes)]
  return tuple(i for i in range(rank) if i not in axes)


def broadcast(param, shape, axes):
  """Reshapes a per-channel parameter to broadcast against `shape`."""
  rank = len(shape)
  axes = sorted(a % rank for a in np.atleast_1d(axes))
  return np.reshape(param, [shape[i] if i in axes else 1 for i in range(rank)])


def moments(x, axes):
  x = x.astype(np.float64)
  red = reduction_axes(x.ndim, axes)
  return x.mean(axis=red), x.var(axis=red)


def normalize(x, mean, var, gamma, beta, eps, axes):
  x64 = x.astype(np.float64)
  shape = x.shape
  y = (x64 - broadcast(mean, shape, axes)) / np.sqrt(broadcast(var, shape, axes) + eps)
  if gamma is not None:
    y = y * broadcast(gamma, shape, axes)
  if beta is not None:
    y = y + broadcast(beta, shape, axes)
  return y


def batch_norm_train(x, gamma, beta, eps, axes):
  mean, var = moments(x, axes)
  return normalize(x, mean, var, gamma, beta, eps, axes), mean, var


def ema(initial, values, decay):
  """Closed form of shadow -= (1 - decay) * (shadow - value), step by step."""
  result = np.asarray(initial, np.float64)
  for value in values:
    result = decay * result + (1 - decay) * np.asarray(value, np.float64)
  return result


def ema_closed_form(initial, values, decay):
  """decay^k * initial + sum_i (1 - decay) decay^(k-1-i) value_i."""
  k = len(values)
  total = decay ** k * np.asarray(initial, np.float64)
  for i, value in enumerate(values):
    total = total + (1 - decay) * decay ** (k - 1 - i) * np.asarray(value, np.float64)
  return total


def max_relative_error(actual, expected):
  """max |actual - expected| relative to the largest |expected| (at least 1e-12)."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  scale = max(np.abs(expected).max(initial=0.0), 1e-12)
  return np.abs(actual - expected).max(initial=0.0) / scale


def batch_norm_gradients(x, dy, gamma, eps, axes):
  """dx, dgamma, dbeta of training-mode batch norm (float64).

  dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat)),
  the means over every axis but `axes`.
  """
  x = x.astype(np.float64)
  dy = dy.astype(np.float64)
  red = reduction_axes(x.ndim, axes)
  mean, var = moments(x, axes)
  shape = x.shape
  xhat = (x - broadcast(mean, shape, axes)) / np.sqrt(broadcast(var, shape, axes) + eps)
  dgamma = (dy * xhat).sum(axis=red)
  dbeta = dy.sum(axis=red)
  mean_dy = broadcast(dy.mean(axis=red), shape, axes)
  mean_dy_xhat = broadcast((dy * xhat).mean(axis=red), shape, axes)
  scale = 1.0 if gamma is None else broadcast(np.asarray(gamma, np.float64), shape, axes)
  dx = scale / np.sqrt(broadcast(var, shape, axes) + eps) * (dy - mean_dy - xhat * mean_dy_xhat)
  return dx, dgamma, dbeta


def bessel(count):
  return count / (count - 1) if count > 1 else 1.0


def precise_statistics(batches, axes, estimator='population', variance_kind='population',
                       weights=None):
  """Precise-BN statistics of a layer's input batches, in float64.

  'population': moments of all values of all batches (concatenated);
  'batch_average': the count-weighted average of each batch's own moments.
  'sample' layers store the variance Bessel-corrected: for all N values with
  'population', per batch (its own n) with 'batch_average'. `weights`: one
  array of per-example weights per batch (slim's batch_weights).
  """
  batches = [np.asarray(b, np.float64) for b in batches]
  rank = batches[0].ndim
  red = reduction_axes(rank, axes)
  if weights is not None:
    data = np.concatenate(batches)
    w = np.broadcast_to(np.concatenate(weights).reshape((-1,) + (1,) * (rank - 1)), data.shape)
    mean = np.average(data, axis=red, weights=w)
    var = np.average(np.square(data - broadcast(mean, data.shape, axes)), axis=red, weights=w)
    return mean, var
  counts = [int(np.prod([b.shape[i] for i in red])) for b in batches]
  if estimator == 'population':
    mean, var = moments(np.concatenate(batches), axes)
    if variance_kind == 'sample':
      var = var * bessel(sum(counts))
    return mean, var
  per_batch = [moments(b, axes) for b in batches]
  total = sum(counts)
  mean = sum(n * m for n, (m, _) in zip(counts, per_batch)) / total
  factor = (lambda n: bessel(n)) if variance_kind == 'sample' else (lambda n: 1.0)
  var = sum(n * factor(n) * s for n, (_, s) in zip(counts, per_batch)) / total
  return mean, var
