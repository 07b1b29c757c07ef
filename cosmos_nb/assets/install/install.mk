# What to install beside cosmos-nb that pip cannot choose by itself: one source for the Makefile (it `include`s this file)
# and for cosmos_nb.video (its torchcodec/FFmpeg error messages read the NAME := value lines). Plain text, no make syntax
# beyond `NAME := value`: no $, no backquotes (the Makefile echoes the values inside a shell command).

# torchcodec must match torch's build: 0.12/0.13 are PyPI's CPU wheels (they import beside a CPU torch 2.13);
# 0.14+ are CUDA builds that dlopen libtorch_cuda and fail to import next to a CPU torch.
CPU_TORCH := torch==2.13.0
CPU_TORCHCODEC := torchcodec>=0.12,<0.14
GPU_TORCH := torch>=2.11
GPU_TORCHCODEC := torchcodec>=0.14

# FFmpeg's shared libraries (torchcodec loads versions 4 to 8): pip cannot install them.
FFMPEG_FIXES := sudo apt-get install ffmpeg (Debian/Ubuntu), conda install -c conda-forge ffmpeg (inside your conda env), or module load ffmpeg (on a cluster: module avail ffmpeg lists the versions)
