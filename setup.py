"""ament_python package setup for global_loc.

`pip install -e .` works on a machine without ROS 2 (console scripts land in the
environment's bin/); `colcon build` installs the same entry points under
lib/global_loc, where `ros2 run` and launch files find them (see setup.cfg).
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "global_loc"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    package_data={
        "global_loc": ["presets/*.yaml"],
        "global_loc.map": ["*.proto"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml")),
        ("share/" + package_name + "/models", glob("models/*.md") + glob("models/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "protobuf>=7.35,<8",
        "pycolmap>=3.12",
        "faiss-cpu>=1.8",
        "scipy>=1.10",
        "PyYAML>=6",
        "tqdm>=4.60",
        "Pillow>=9",
        "rosbags>=0.10",
        "rosbags-image>=0.9",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "test": ["pytest>=7", "grpcio-tools==1.85.1", "matplotlib>=3.7", "psutil>=5.9"],
        "plot": ["matplotlib>=3.7"],
        # kapture data sets in and out (global-loc index/localize --kapture)
        "kapture": ["kapture>=1.1.12"],
        # distributed indexing (global-loc index --ray)
        "distributed": ["ray>=2.9"],
        # learned models: install torch first for your machine (CPU-only:
        # pip install torch --index-url https://download.pytorch.org/whl/cpu), then this extra;
        # kornia for DISK and LightGlue (loaded from files by path, never downloaded)
        "learned": ["torch>=2.1", "onnx>=1.15", "onnxruntime>=1.17", "kornia==0.9.0"],
        # GPU extras are opt-in: they pull CUDA libraries.
        "gpu": ["torch>=2.1", "onnx>=1.15", "onnxruntime-gpu>=1.18", "faiss-gpu-cu12>=1.8", "kornia==0.9.0"],
    },
    zip_safe=True,
    maintainer="global_loc maintainers",
    maintainer_email="maintainers@global-loc.dev",
    description="Visual global localization against a prebuilt map, for ROS 2.",
    license="BSD-3-Clause",
    entry_points={
        "console_scripts": [
            "global-loc = global_loc.cli.main:main",
            "localizer_node = global_loc.ros.localizer_node:main",
            "map_indexer_node = global_loc.ros.map_indexer_node:main",
        ],
    },
)
