from setuptools import find_packages, setup

DEMO = ['scikit-learn>=1.3', 'matplotlib>=3.7']

setup(
    name='tf1_bn',
    version='0.1.0',
    description='Batch normalization for TF1-style graph-mode models on current TensorFlow',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['tf1_bn', 'tf1_bn.*']),
    license='Apache-2.0',
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Developers',
        'Intended Audience :: Science/Research',
        'License :: OSI Approved :: Apache Software License',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    # Python and TensorFlow: see the README's Requirements. 2.16 is the first
    # release with Keras 3 (where the TF1 BN APIs break); 2.21 the newest the
    # test suite has passed on.
    python_requires='>=3.10',
    install_requires=['tensorflow>=2.16,<2.22', 'numpy', 'tqdm>=4.66'],
    extras_require={
        'demo': DEMO,
        # tf-keras runs the legacy tf.compat.v1.layers.batch_normalization the
        # parity tests compare against (only with TF_USE_LEGACY_KERAS=1), and
        # the real slim batch_norm; tf-slim's own nets test tf1_bn.patch_slim().
        # scipy (already a dependency of scikit-learn) runs the statistical
        # tests of the layers' initializers.
        # LiteRT's interpreter for `tf1-bn export --tflite` (tf.lite.Interpreter,
        # deprecated, is the fallback).
        'deploy': ['ai-edge-litert'],
        # `tf1-bn export --onnx` (tf2onnx 1.17 converts the exported SavedModel
        # on TensorFlow 2.21; about 110 MB installed, so not in `test`).
        'onnx': ['tf2onnx>=1.17', 'onnxruntime'],
        # pytest-xdist: the README's test command runs the suite on 2 processes.
        'test': DEMO + ['pytest>=7', 'pytest-xdist>=3', 'tf-keras>=2.16', 'tf-slim==1.1.0', 'scipy>=1.10',
                        'ai-edge-litert'],
    },
    entry_points={'console_scripts': ['tf1-bn=tf1_bn.studies.cli:main']},
)
