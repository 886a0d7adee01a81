#!/bin/sh
# build-extensions.sh SRC WHEELS RENDERER: the Hunyuan3D CUDA rasterizer as a wheel into
# WHEELS and the C++ mesh renderer module into RENDERER, built against exactly the image's
# torch (TORCH_VERSION from TORCH_INDEX_URL, default the CUDA 12.8 index) and numpy (the
# image lock), for TORCH_CUDA_ARCH_LIST. Runs in the CUDA devel image.
# For any VARIANT but cuda it only makes the two folders: the legacy builder runs this
# stage for a CPU build too (on the CPU base), and nothing of CUDA may be fetched then.
set -eu
src=$1 wheels=$2 renderer=$3
here=$(dirname "$0")
mkdir -p "$wheels" "$renderer"
if [ "${VARIANT:-cuda}" != cuda ]; then
  echo "VARIANT=${VARIANT}: no CUDA extensions"
  exit 0
fi
"$here/apt-install.sh" python3 python3-venv python3-dev build-essential ninja-build
python3 -m venv /opt/build-venv
export PATH=/opt/build-venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_CERT=/etc/ssl/certs/ca-certificates.crt
# torch's extension builder runs this many compilers at once (ninja); each nvcc needs a GiB or more
export MAX_JOBS="${MAX_JOBS:-4}"
pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu128}"
# numpy at the image's version, so nothing here is built against a numpy the image lacks;
# wheel is a build tool only, so the lock does not name it
pip install -c "$here/image-lock.txt" numpy pybind11 setuptools wheel==0.45.1
cd "$src/custom_rasterizer"
pip wheel --no-build-isolation --no-deps -w "$wheels" .
cd "$src/DifferentiableRenderer"
python setup.py build_ext --inplace
cp ./*.so "$renderer/"
# what the kernels were built for, beside the renderer: the extension check compares the
# compiled architectures (cuobjdump) with it
echo "${TORCH_CUDA_ARCH_LIST}" >"$renderer/cuda-arch-list.txt"
ls -l "$wheels" "$renderer"
