"""vtlearn: joint video–text(–audio) representation learning from narrated video."""

from setuptools import find_packages, setup

setup(
    name="vtlearn",
    version="0.1.0",
    description=("MIL-NCE, MCN, VT-TWINS and Hessel et al. in JAX/Flax over "
                 "TFRecords, with a built-in synthetic narrated-video lab."),
    packages=find_packages(include=["vtlearn", "vtlearn.*"]),
    python_requires=">=3.11",
    install_requires=[
        "absl-py>=2.1",
        "flax>=0.10",
        "importlib_resources",  # tensorflow-datasets needs it to build a dataset (lab_tfds)
        "jax>=0.5",
        "matplotlib>=3.8",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "pillow>=10.0",
        "scikit-learn>=1.4",
        "tensorboard>=2.16",
        "tensorflow-cpu>=2.16",
        "tensorflow-datasets>=4.9",
        "tqdm>=4.66",
    ],
    extras_require={
        "video": ["av>=12.0"],
        "word2vec": ["gensim>=4.3"],
        "milnce_release": ["torch>=2.2"],
        "test": ["pytest>=8.0", "av>=12.0", "gensim>=4.3", "torch>=2.2", "librosa>=0.10",
                 "apache-beam>=2.60", "tslearn>=0.6", "ott-jax>=0.5", "pysdtw>=0.0.5",
                 "nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29", "jupytext>=1.16"],
        "beam": ["apache-beam>=2.60"],  # conversion on Dataflow, Flink or Spark
        "benchmarks": ["torch>=2.2", "tslearn>=0.6", "ott-jax>=0.5", "pysdtw>=0.0.5"],
        "tpu": ["jax[tpu]"],       # Cloud TPU VMs (launch/tpu.py installs it)
        "gpu": ["jax[cuda12]"],    # NVIDIA GPUs
    },
)
