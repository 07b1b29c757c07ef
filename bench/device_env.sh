# Source this (from the repo root) on a GPU machine that lacks fastcore, torchcodec and FFmpeg's libraries, e.g. the H100
# the benchmarks in BENCHMARKS.md ran on:   source bench/device_env.sh
# It installs the wheels carried in .whl/ (fastcore, torchcodec built for the machine's torch, PyAV for the FFmpeg shared
# libraries it bundles) into /tmp/site, and gives FFmpeg's libraries the names torchcodec links against. Without ipywidgets
# (the widgets only draw in notebooks) it puts a stand-in module on the path, so `cosmos_nb.widgets` and the demo import.
# Fetch the wheels on a machine with pip access (torch 2.11 -> torchcodec 0.11; PyAV 15 bundles FFmpeg 7 = libavcodec 61):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform any -d .whl fastcore==2.2.39 torchcodec==0.11.1 av==15.1.0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
_libs=/tmp/site/av.libs
for _n in avutil.so.59 avcodec.so.61 avformat.so.61 avdevice.so.61 avfilter.so.10 swscale.so.8 swresample.so.5; do
  _f=$(cd $_libs && ls lib${_n%%.so*}-*.so.* | head -1) && ln -sf "$_f" "$_libs/lib$_n"    # beside the real file: $ORIGIN works
done
export PYTHONPATH=/tmp/site:$PWD LD_LIBRARY_PATH=$_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import ipywidgets" 2>/dev/null || { mkdir -p /tmp/stub && printf 'VBox = HBox = Output = object\n' > /tmp/stub/ipywidgets.py && export PYTHONPATH=$PYTHONPATH:/tmp/stub; }
python3 -c "import torchcodec, torch; print('torch', torch.__version__, 'torchcodec', torchcodec.__version__, 'cuda', torch.cuda.is_available())"
